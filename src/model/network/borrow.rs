//! Disjoint borrows of a network's buffer list: an op reads some buffers and writes others.

/// `(&v[read], &mut v[write])` for two different indices.
pub(super) fn read_write<T>(v: &mut [T], read: usize, write: usize) -> (&T, &mut T) {
    assert_ne!(read, write);
    if read < write {
        let (a, b) = v.split_at_mut(write);
        (&a[read], &mut b[0])
    } else {
        let (a, b) = v.split_at_mut(read);
        (&b[0], &mut a[write])
    }
}

/// Shared references to `v[read[..]]` and exclusive ones to `v[write[..]]`: the write indices
/// distinct and none of them read (the read indices may repeat).
pub(super) fn split<T, const R: usize, const W: usize>(
    v: &mut [T],
    read: [usize; R],
    write: [usize; W],
) -> ([&T; R], [&mut T; W]) {
    let mut reads: [Option<&T>; R] = [None; R];
    let mut writes: [Option<&mut T>; W] = std::array::from_fn(|_| None);
    for (i, item) in v.iter_mut().enumerate() {
        if let Some(k) = write.iter().position(|&j| j == i) {
            assert!(!read.contains(&i), "buffer {i} is both read and written");
            writes[k] = Some(item);
        } else if read.contains(&i) {
            let item: &T = item;
            for (k, _) in read.iter().enumerate().filter(|&(_, &j)| j == i) {
                reads[k] = Some(item);
            }
        }
    }
    (
        reads.map(|r| r.expect("read index in range")),
        writes.map(|w| w.expect("write indices distinct and in range")),
    )
}

/// A layer's backward buffers: its input `v[x]` and the buffer it reads as its output, `v[y]`,
/// then the gradient of its output node `out`, and its input's gradient when the input has one
/// (`gradient[node]`: where each node's gradient lives, if it has one).
pub(super) fn backward_bufs<'a, T>(
    v: &'a mut [T],
    gradient: &[Option<usize>],
    x: usize,
    y: usize,
    out: usize,
) -> (&'a T, &'a T, &'a mut T, Option<&'a mut T>) {
    let dy = gradient[out].expect("the output has a gradient");
    match gradient[x] {
        None => {
            let ([x, y], [dy]) = split(v, [x, y], [dy]);
            (x, y, dy, None)
        }
        Some(dx) => {
            let ([x, y], [dy, dx]) = split(v, [x, y], [dy, dx]);
            (x, y, dy, Some(dx))
        }
    }
}

/// `(&mut v[lo], &mut v[hi])` for lo < hi.
pub(super) fn both_mut<T>(v: &mut [T], lo: usize, hi: usize) -> (&mut T, &mut T) {
    assert!(lo < hi);
    let (a, b) = v.split_at_mut(hi);
    (&mut a[lo], &mut b[0])
}
