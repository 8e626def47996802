//! Intrusive doubly linked lists over slab indices (`u32`), used by the
//! eviction queues and the timer wheel's buckets. O(1) push, unlink, move.

/// The "no node" index.
pub(crate) const NIL: u32 = u32::MAX;

/// A node that can sit in one list at a time.
pub(crate) trait Linked {
    fn prev(&self) -> u32;
    fn next(&self) -> u32;
    fn set_prev(&mut self, p: u32);
    fn set_next(&mut self, n: u32);
}

/// Head, tail and total weight of one list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListHead {
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) weight: u64,
    pub(crate) len: u32,
    /// Pushes so far (wrapping); used by the policy to age entries.
    pub(crate) ticks: u32,
}

impl ListHead {
    pub(crate) const EMPTY: ListHead = ListHead {
        head: NIL,
        tail: NIL,
        weight: 0,
        len: 0,
        ticks: 0,
    };

    pub(crate) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    /// Appends `i` (not in any list) at the tail.
    #[inline]
    pub(crate) fn push_back<T: Linked>(&mut self, nodes: &mut [T], i: u32, weight: u64) {
        let n = &mut nodes[i as usize];
        n.set_prev(self.tail);
        n.set_next(NIL);
        if self.tail == NIL {
            self.head = i;
        } else {
            nodes[self.tail as usize].set_next(i);
        }
        self.tail = i;
        self.weight += weight;
        self.len += 1;
    }

    /// Removes `i`, which must be in this list.
    #[inline]
    pub(crate) fn unlink<T: Linked>(&mut self, nodes: &mut [T], i: u32, weight: u64) {
        let (p, n) = {
            let node = &nodes[i as usize];
            (node.prev(), node.next())
        };
        if p == NIL {
            self.head = n;
        } else {
            nodes[p as usize].set_next(n);
        }
        if n == NIL {
            self.tail = p;
        } else {
            nodes[n as usize].set_prev(p);
        }
        let node = &mut nodes[i as usize];
        node.set_prev(NIL);
        node.set_next(NIL);
        self.weight -= weight;
        self.len -= 1;
    }

    /// Moves `i` (in this list) to the tail.
    #[inline]
    pub(crate) fn move_to_back<T: Linked>(&mut self, nodes: &mut [T], i: u32) {
        if self.tail == i {
            return;
        }
        self.unlink(nodes, i, 0);
        self.push_back(nodes, i, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    struct N(u32, u32);
    impl Linked for N {
        fn prev(&self) -> u32 {
            self.0
        }
        fn next(&self) -> u32 {
            self.1
        }
        fn set_prev(&mut self, p: u32) {
            self.0 = p;
        }
        fn set_next(&mut self, n: u32) {
            self.1 = n;
        }
    }

    fn collect(l: &ListHead, nodes: &[N]) -> Vec<u32> {
        let mut out = vec![];
        let mut i = l.head;
        while i != NIL {
            out.push(i);
            i = nodes[i as usize].1;
        }
        out
    }

    #[test]
    fn push_unlink_move() {
        let mut nodes = vec![N(NIL, NIL); 4];
        let mut l = ListHead::EMPTY;
        for i in 0..4 {
            l.push_back(&mut nodes, i, 2);
        }
        assert_eq!(collect(&l, &nodes), vec![0, 1, 2, 3]);
        assert_eq!(l.weight, 8);
        l.move_to_back(&mut nodes, 0);
        l.unlink(&mut nodes, 2, 2);
        assert_eq!(collect(&l, &nodes), vec![1, 3, 0]);
        assert_eq!((l.len, l.weight, l.tail), (3, 6, 0));
        l.unlink(&mut nodes, 1, 2);
        l.unlink(&mut nodes, 0, 2);
        l.unlink(&mut nodes, 3, 2);
        assert!(l.is_empty());
        assert_eq!(l.tail, NIL);
    }
}
