//! `/proc/PID/mountinfo`, parsed once for every reader (the cgroup layout,
//! the holders of a path, the rootfs' parent mount). Pure text handling.

use std::path::PathBuf;

/// One line of mountinfo (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u64,
    pub parent: u64,
    /// The device (major, minor) of the filesystem.
    pub dev: (u64, u64),
    /// The directory of the filesystem that is mounted here.
    pub root: String,
    pub mount_point: PathBuf,
    /// The optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub optional: Vec<String>,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

impl MountInfo {
    /// The peer group of `shared:N`, or of `master:N`, if present.
    pub fn group(&self, kind: &str) -> Option<&str> {
        self.optional.iter().find_map(|f| f.strip_prefix(kind).and_then(|r| r.strip_prefix(':')))
    }
}

/// Every well-formed line of `text`; the others are skipped.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    let (pre, post) = line.split_once(" - ")?;
    let pre: Vec<&str> = pre.split(' ').collect();
    let post: Vec<&str> = post.split(' ').collect();
    if pre.len() < 6 || post.len() < 3 {
        return None;
    }
    let (major, minor) = pre[2].split_once(':')?;
    Some(MountInfo {
        id: pre[0].parse().ok()?,
        parent: pre[1].parse().ok()?,
        dev: (major.parse().ok()?, minor.parse().ok()?),
        root: unescape(pre[3]),
        mount_point: PathBuf::from(unescape(pre[4])),
        optional: pre[6..].iter().map(|s| s.to_string()).collect(),
        fs_type: post[0].to_string(),
        source: unescape(post[1]),
        super_options: post[2].to_string(),
    })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_optional_fields_escapes_and_skips_junk() {
        let text = "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n\
                    garbage line\n\
                    40 36 0:21 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].id, m[0].parent, m[0].dev), (36, 35, (98, 0)));
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt two"));
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[0].group("shared"), Some("7"));
        assert_eq!(m[0].group("master"), Some("1"));
        assert_eq!((m[0].fs_type.as_str(), m[0].source.as_str()), ("ext3", "/dev/root"));
        assert_eq!(m[1].super_options, "rw,memory");
        assert!(m[1].optional.is_empty());
    }
}
