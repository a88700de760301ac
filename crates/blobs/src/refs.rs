//! Ref names: the named pointers a job finds its latest checkpoint by
//! (`jobs/<order>/checkpoint/latest`). They become file paths and object keys, so they are
//! checked strictly.

use std::fmt;

/// Longest ref name, in bytes.
pub const MAX_REF_NAME_BYTES: usize = 256;
/// Most `/`-separated segments in a ref name.
pub const MAX_REF_SEGMENTS: usize = 16;

/// A checked ref name: 1 to [`MAX_REF_NAME_BYTES`] bytes of segments separated by single `/`,
/// each segment made of ASCII letters, digits, `.`, `_` and `-` and not starting with `.` (so
/// no `.`, no `..`, no hidden files); no leading or trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RefName(String);

/// Why a ref name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ref name {shown} is refused: {reason}")]
pub struct RefNameError {
    /// The name as given, escaped and cut to 80 characters so hostile input prints safely.
    pub shown: String,
    pub reason: &'static str,
}

impl RefName {
    pub fn new(name: &str) -> Result<RefName, RefNameError> {
        let refuse = |reason| {
            let shown: String = format!("{name:?}").chars().take(80).collect();
            Err(RefNameError { shown, reason })
        };
        if name.is_empty() {
            return refuse("it is empty");
        }
        if name.len() > MAX_REF_NAME_BYTES {
            return refuse("it is longer than 256 bytes");
        }
        if name.starts_with('/') {
            return refuse("it starts with '/'; ref names are relative, like jobs/<order>/latest");
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
        {
            return if bad == '\0' {
                refuse("it contains a NUL byte")
            } else {
                refuse("it may contain only ASCII letters, digits, '.', '_', '-' and '/'")
            };
        }
        let mut segments = 0;
        for segment in name.split('/') {
            segments += 1;
            if segment.is_empty() {
                return refuse("it has an empty segment ('//' or a trailing '/')");
            }
            if segment.starts_with('.') {
                return refuse("a segment starts with '.' ('..' and hidden names are not allowed)");
            }
        }
        if segments > MAX_REF_SEGMENTS {
            return refuse("it has more than 16 '/'-separated segments");
        }
        Ok(RefName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RefName {
    type Err = RefNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RefName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(name: &str, expect: Result<(), &str>) {
        match (RefName::new(name), expect) {
            (Ok(r), Ok(())) => assert_eq!(r.as_str(), name),
            (Err(e), Err(reason)) => assert!(
                e.reason.contains(reason),
                "{name:?}: refused for {:?}, expected {reason:?}",
                e.reason
            ),
            (got, want) => panic!("{name:?}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn ref_names_are_checked_strictly() {
        check("jobs/42/checkpoint/latest", Ok(()));
        check("a", Ok(()));
        check("A-z_0.9/x.y", Ok(()));
        check(&"a".repeat(256), Ok(()));
        check("", Err("empty"));
        check(&"a".repeat(257), Err("longer than 256"));
        check("../x", Err("starts with '.'"));
        check("a/../../etc", Err("starts with '.'"));
        check("a/./b", Err("starts with '.'"));
        check(".hidden", Err("starts with '.'"));
        check("/etc/passwd", Err("starts with '/'"));
        check("a//b", Err("empty segment"));
        check("a/", Err("empty segment"));
        check("a\0b", Err("NUL"));
        check("a b", Err("only ASCII"));
        check("a\\b", Err("only ASCII"));
        check("jobs/é", Err("only ASCII"));
        check("a\nb", Err("only ASCII"));
        check(&["s"; 17].join("/"), Err("more than 16"));
        check(&["s"; 16].join("/"), Ok(()));
    }

    #[test]
    fn a_refused_name_prints_escaped_and_cut() {
        let hostile = format!("\u{1b}[31m{}", "x".repeat(1000));
        let e = RefName::new(&hostile).expect_err("refused");
        let text = e.to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.len() < 200, "{text}");
    }
}
