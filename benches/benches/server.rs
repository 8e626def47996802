//! The server section of `cargo xtask bench` (being built: no rows yet).

fn main() {
    let section = kuai_benches::Section::from_args("server");
    println!(
        "section {} has no experiments yet (quick: {})",
        section.name(),
        section.quick()
    );
}
