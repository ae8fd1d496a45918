//! The requirement DSL (`--require`, from images' `NVIDIA_REQUIRE_*`).

use std::cmp::Ordering;

use crate::{DriverInfo, Error, Selection};

/// What a requirement is checked against. A fact that is not known makes every term about
/// it pass, as upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Facts<'a> {
    /// The driver's CUDA version (`12.4`).
    pub cuda: Option<&'a str>,
    /// The NVRM version (`550.54.14`).
    pub driver: Option<&'a str>,
    /// The GPU's compute capability (`8.0`).
    pub arch: Option<&'a str>,
    /// The GPU's brand (`Tesla`).
    pub brand: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Name {
    Cuda,
    Driver,
    Arch,
    Brand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Term {
    name: Name,
    op: Op,
    value: String,
}

/// A parsed requirement: space-separated groups, any of which may hold (OR); each group
/// comma-separated terms that must all hold (AND); a term is `<name><op><value>` with name
/// `cuda`, `driver`, `arch` or `brand` and op one of `=`, `!=`, `<`, `<=`, `>`, `>=`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    text: String,
    groups: Vec<Vec<Term>>,
}

fn invalid(text: &str, reason: &'static str) -> Error {
    Error::InvalidRequirement {
        expr: text.to_owned(),
        reason,
    }
}

/// Version components: digits and dots only, no empty component.
fn version(v: &str) -> Option<Vec<u64>> {
    let mut parts: Vec<u64> = v
        .split('.')
        .map(|p| {
            p.parse()
                .ok()
                .filter(|_| p.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect::<Option<_>>()?;
    while parts.last() == Some(&0) && parts.len() > 1 {
        parts.pop();
    }
    Some(parts)
}

impl Requirement {
    /// Parses an expression; an empty one is always satisfied.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequirement`] with upstream's "invalid expression" and the reason.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut groups = Vec::new();
        for group in text.split(' ').filter(|g| !g.is_empty()) {
            let mut terms = Vec::new();
            for term in group.split(',').filter(|t| !t.is_empty()) {
                let start = term
                    .find(['<', '>', '=', '!'])
                    .ok_or_else(|| invalid(text, "a term has no operator"))?;
                let (name, rest) = term.split_at(start);
                let op_len = rest.find(|c| !"<>=!".contains(c)).unwrap_or(rest.len());
                let (op, value) = rest.split_at(op_len);
                let op = match op {
                    "=" => Op::Eq,
                    "!=" => Op::Ne,
                    "<" => Op::Lt,
                    "<=" => Op::Le,
                    ">" => Op::Gt,
                    ">=" => Op::Ge,
                    _ => return Err(invalid(text, "unknown operator")),
                };
                if value.is_empty() {
                    return Err(invalid(text, "a term has no value"));
                }
                let name = match name.to_ascii_lowercase().as_str() {
                    "cuda" => Name::Cuda,
                    "driver" => Name::Driver,
                    "arch" => Name::Arch,
                    "brand" => Name::Brand,
                    _ => return Err(invalid(text, "unknown name (cuda, driver, arch or brand)")),
                };
                match name {
                    Name::Brand if !matches!(op, Op::Eq | Op::Ne) => {
                        return Err(invalid(text, "brand compares only with = and !="));
                    }
                    Name::Brand => {}
                    _ if version(value).is_none() => {
                        return Err(invalid(text, "a version is digits and dots"));
                    }
                    _ => {}
                }
                terms.push(Term {
                    name,
                    op,
                    value: value.to_owned(),
                });
            }
            if !terms.is_empty() {
                groups.push(terms);
            }
        }
        Ok(Requirement {
            text: text.to_owned(),
            groups,
        })
    }

    /// Checks the requirement against `facts`.
    ///
    /// # Errors
    ///
    /// [`Error::Unsatisfied`] quoting the expression's first group (upstream's message), or
    /// [`Error::InvalidRequirement`] when a fact is not a version.
    pub fn check(&self, facts: &Facts<'_>) -> Result<(), Error> {
        if self.groups.is_empty() {
            return Ok(());
        }
        for group in &self.groups {
            let mut all = true;
            for term in group {
                if !self.holds(term, facts)? {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(());
            }
        }
        let first = self
            .text
            .split(' ')
            .find(|g| !g.is_empty())
            .unwrap_or_default();
        Err(Error::Unsatisfied {
            condition: first.to_owned(),
            hint: first.starts_with("cuda>="),
        })
    }

    /// Checks the requirement for every selected GPU (and once without a device when none
    /// is selected) on the host `info` describes, as upstream's `configure` does.
    ///
    /// # Errors
    ///
    /// As [`Requirement::check`].
    pub fn check_selection(&self, info: &DriverInfo, selection: &Selection) -> Result<(), Error> {
        // Probed without NVML, the CUDA version, brands and architectures are unknown: a
        // requirement on them cannot be told to hold (unknown facts pass, as upstream).
        if !info.from_nvml
            && let Some(term) = self
                .groups
                .iter()
                .flatten()
                .find(|t| t.name != Name::Driver)
        {
            let name = match term.name {
                Name::Cuda => "cuda",
                Name::Arch => "arch",
                Name::Brand => "brand",
                Name::Driver => "driver",
            };
            return Err(Error::NeedsNvml {
                what: format!("a {name} requirement"),
            });
        }
        let base = Facts {
            cuda: info.cuda_version.as_deref(),
            driver: Some(&info.nvrm_version),
            ..Facts::default()
        };
        if selection.gpus.is_empty() {
            return self.check(&base);
        }
        for g in &selection.gpus {
            self.check(&Facts {
                arch: g.architecture.as_deref(),
                brand: g.brand.as_deref(),
                ..base
            })?;
        }
        Ok(())
    }

    fn holds(&self, term: &Term, facts: &Facts<'_>) -> Result<bool, Error> {
        let fact = match term.name {
            Name::Cuda => facts.cuda,
            Name::Driver => facts.driver,
            Name::Arch => facts.arch,
            Name::Brand => facts.brand,
        };
        let Some(fact) = fact else {
            return Ok(true);
        };
        let ord = if term.name == Name::Brand {
            if fact.eq_ignore_ascii_case(&term.value) {
                Ordering::Equal
            } else {
                Ordering::Less
            }
        } else {
            let have = version(fact)
                .ok_or_else(|| invalid(&self.text, "the host's version is not digits and dots"))?;
            let want = version(&term.value)
                .ok_or_else(|| invalid(&self.text, "a version is digits and dots"))?;
            have.cmp(&want)
        };
        Ok(match term.op {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
        })
    }
}
