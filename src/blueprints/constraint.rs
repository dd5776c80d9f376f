//! Terraform's version constraints (`~> 1.2`, `>= 1.0, < 2.0`, `1.2.3`, `!= 1.3.0`), which
//! the `semver` crate's requirements do not match: there a bare version means `^`, and `~>`
//! and `!=` do not exist.

use semver::Version;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    NotEq,
    Greater,
    GreaterEq,
    Less,
    LessEq,
    /// `~>`: this version or newer, with the segments before the last one given unchanged.
    Pessimistic,
}

#[derive(Clone, Debug)]
struct Clause {
    op: Op,
    version: Version,
    /// How many of major, minor, patch were written (for `~>`).
    segments: usize,
}

/// A parsed constraint; the empty one allows any release.
#[derive(Clone, Debug, Default)]
pub struct Constraint {
    clauses: Vec<Clause>,
}

impl Constraint {
    pub fn parse(text: &str) -> Result<Constraint> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Constraint::default());
        }
        let clauses = text
            .split(',')
            .map(|part| clause(part.trim()).ok_or_else(|| invalid(text, part.trim())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Constraint { clauses })
    }

    /// Whether Terraform would pick `version` under this constraint: every clause holds, and a
    /// pre-release only when a clause names it exactly.
    pub fn matches(&self, version: &Version) -> bool {
        if !version.pre.is_empty()
            && !self
                .clauses
                .iter()
                .any(|c| c.op == Op::Eq && c.version == *version)
        {
            return false;
        }
        self.allows(version)
    }

    /// Whether every clause holds for `version`, pre-release or not (for a version asked for
    /// by name).
    pub fn allows(&self, version: &Version) -> bool {
        self.clauses.iter().all(|c| c.holds(version))
    }
}

impl Clause {
    fn holds(&self, v: &Version) -> bool {
        let c = &self.version;
        match self.op {
            Op::Eq => v == c,
            Op::NotEq => v != c,
            Op::Greater => v > c,
            Op::GreaterEq => v >= c,
            Op::Less => v < c,
            Op::LessEq => v <= c,
            Op::Pessimistic => {
                // The next major (or minor) version; none above `u64::MAX`, where nothing is.
                let next_major = || c.major.checked_add(1).map(|m| Version::new(m, 0, 0));
                let upper = match self.segments {
                    1 | 2 => next_major(),
                    _ => match c.minor.checked_add(1) {
                        Some(minor) => Some(Version::new(c.major, minor, 0)),
                        None => next_major(),
                    },
                };
                v >= c && upper.is_none_or(|upper| *v < upper)
            }
        }
    }
}

fn clause(text: &str) -> Option<Clause> {
    let (op, rest) = [
        ("~>", Op::Pessimistic),
        (">=", Op::GreaterEq),
        ("<=", Op::LessEq),
        ("!=", Op::NotEq),
        (">", Op::Greater),
        ("<", Op::Less),
        ("=", Op::Eq),
    ]
    .iter()
    .find_map(|(prefix, op)| text.strip_prefix(prefix).map(|rest| (*op, rest)))
    .unwrap_or((Op::Eq, text));
    let rest = rest.trim();
    let rest = rest.strip_prefix('v').unwrap_or(rest);
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    if numbers.is_empty() || numbers.len() > 3 {
        return None;
    }
    let mut parts = [0u64; 3];
    for (slot, number) in parts.iter_mut().zip(&numbers) {
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = number.parse().ok()?;
    }
    let mut version = Version::new(parts[0], parts[1], parts[2]);
    if let Some(pre) = pre {
        version.pre = semver::Prerelease::new(pre).ok()?;
    }
    Some(Clause {
        op,
        version,
        segments: numbers.len(),
    })
}

fn invalid(text: &str, part: &str) -> Error {
    Error::Unprocessable(vec![format!(
        "version: {text:?} is not a version constraint ({part:?}); use Terraform's syntax, \
         e.g. \"~> 1.2\" or \">= 1.0, < 2.0\""
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    fn matching(constraint: &str, versions: &[&str]) -> Vec<String> {
        let c = Constraint::parse(constraint).unwrap();
        versions
            .iter()
            .filter(|s| c.matches(&v(s)))
            .map(|s| s.to_string())
            .collect()
    }

    const ALL: &[&str] = &[
        "0.9.0",
        "1.0.0",
        "1.2.0",
        "1.2.5",
        "1.3.0",
        "2.0.0-rc.1",
        "2.0.0",
    ];

    #[test]
    fn terraform_constraint_forms_select_as_terraform_does() {
        assert_eq!(
            matching("", ALL),
            ["0.9.0", "1.0.0", "1.2.0", "1.2.5", "1.3.0", "2.0.0"]
        );
        assert_eq!(matching("~> 1.2", ALL), ["1.2.0", "1.2.5", "1.3.0"]);
        assert_eq!(matching("~> 1.2.0", ALL), ["1.2.0", "1.2.5"]);
        assert_eq!(matching("~> 1", ALL), ["1.0.0", "1.2.0", "1.2.5", "1.3.0"]);
        assert_eq!(matching(">= 1.0, < 1.3", ALL), ["1.0.0", "1.2.0", "1.2.5"]);
        assert_eq!(matching("1.2.0", ALL), ["1.2.0"]);
        assert_eq!(matching("=1.2", ALL), ["1.2.0"]);
        assert_eq!(
            matching("!= 1.2.5, > 1.0.0, <= 1.3.0", ALL),
            ["1.2.0", "1.3.0"]
        );
        // Pre-releases only by exact name.
        assert_eq!(matching(">= 2.0.0-rc.1", ALL), ["2.0.0"]);
        assert_eq!(matching("= 2.0.0-rc.1", ALL), ["2.0.0-rc.1"]);
        assert!(
            Constraint::parse(">= 1.0")
                .unwrap()
                .allows(&v("2.0.0-rc.1"))
        );
    }

    #[test]
    fn malformed_constraints_are_refused() {
        for bad in ["latest", "~> ", ">= 1.x", "1.2.3.4", ">=1.0,", "^1.2"] {
            assert!(Constraint::parse(bad).is_err(), "{bad}");
        }
        assert!(Constraint::parse("  ").is_ok());
        assert!(Constraint::parse("v1.2.3").is_ok());
    }

    #[test]
    fn pessimistic_constraints_at_the_largest_version_do_not_overflow() {
        // Found by fuzzing: the upper bound of `~> MAX` overflowed.
        let max = u64::MAX;
        let top = Version::new(max, max, max);
        for text in [format!("~> {max}"), format!("~> {max}.0")] {
            let c = Constraint::parse(&text).unwrap();
            assert!(!c.matches(&v("1.0.0")), "{text}");
            assert!(c.matches(&Version::new(max, 0, 1)), "{text}");
        }
        assert!(
            Constraint::parse(&format!("~> {max}"))
                .unwrap()
                .matches(&top)
        );
        assert!(
            Constraint::parse(&format!("~> 1.{max}.0"))
                .unwrap()
                .matches(&Version::new(1, max, 1))
        );
        assert!(
            !Constraint::parse(&format!("~> 1.{max}.0"))
                .unwrap()
                .matches(&v("2.0.0"))
        );
    }
}
