//! Object bodies for tests that need realistic text: lines mixing ASCII and
//! multi-byte UTF-8 (Japanese, an emoji, accents), and bodies of a given size.

/// A line of about `width` bytes, mixing ASCII and three-byte Japanese characters.
pub fn mixed_line(i: usize, width: usize) -> String {
    let mut line = format!("{{\"id\":\"n{i:08}\",\"text\":\"");
    let pieces = ["日本語のテキスト", " ascii words ", "改行なし", "🦀", "é"];
    let mut k = i;
    while line.len() + 3 < width {
        line.push_str(pieces[k % pieces.len()]);
        k += 1;
    }
    line.push_str("\"}");
    line
}

/// `count` mixed lines, each ending with `ending`.
pub fn mixed_lines(count: usize, width: usize, ending: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count {
        out.extend_from_slice(mixed_line(i, width).as_bytes());
        out.extend_from_slice(ending.as_bytes());
    }
    out
}

/// At least `size` bytes of mixed lines of about 3.6 KB each; returns the body and its lines.
pub fn big_body(size: usize) -> (Vec<u8>, i64) {
    let mut body = Vec::with_capacity(size + 8192);
    let mut lines = 0;
    while body.len() < size {
        body.extend_from_slice(mixed_line(lines, 3600).as_bytes());
        body.push(b'\n');
        lines += 1;
    }
    (body, lines as i64)
}
