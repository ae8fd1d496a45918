//! What one built-in update may spend on the image, and what stops it.

use std::time::{Duration, Instant};

use crate::Error;

/// What one update may spend on the image, which it reads in nvc's own process: a hostile
/// `ld.so.conf` (includes that fan out, globs over huge directories) must neither hang nor
/// exhaust the process that embeds nvc. Real images use a tiny fraction (Debian's
/// configuration is 4 files and 6 lines; a distribution's library directory a few thousand
/// names). Past a count the update refuses the image: `configure` fails, naming the
/// budget, with the container unchanged. Past the time (a slow, lazily pulled image) it is
/// unsure, and `configure` falls back to `ldconfig` in its sandbox, which has its own limits.
pub(super) struct Budget {
    deadline: Instant,
    /// Configuration files still to read.
    files: usize,
    /// Configuration lines still to read.
    lines: usize,
    /// Directory entries still to look at (`include` globs and the scan).
    names: usize,
}

/// The update stops: the count the image exceeded, or the time.
pub(super) enum Refused {
    /// A count: the image is refused.
    Count(String),
    /// The time: unsure.
    Time(String),
}

/// `r`, with the time running out made an unsure reason (`Ok(Err(reason))`) and a count a
/// refusal.
pub(super) fn settle<T>(r: Result<T, Refused>) -> Result<Result<T, String>, Error> {
    match r {
        Ok(done) => Ok(Ok(done)),
        Err(Refused::Time(why)) => Ok(Err(why)),
        Err(Refused::Count(why)) => Err(Error::Ldconfig {
            program: "built-in cache update".into(),
            what: format!(
                "refused the image's linker configuration: {why} (a hostile or broken image)"
            ),
            output: String::new(),
            error: None,
        }),
    }
}

impl Budget {
    const TIME: Duration = Duration::from_secs(1);
    const FILES: usize = 256;
    const LINES: usize = 1 << 16;
    const NAMES: usize = 1 << 18;

    pub(super) fn new() -> Self {
        Budget {
            deadline: Instant::now() + Self::TIME,
            files: Self::FILES,
            lines: Self::LINES,
            names: Self::NAMES,
        }
    }

    /// This budget with `spent` less time.
    pub(super) fn less(mut self, spent: Duration) -> Self {
        self.deadline = self.deadline.checked_sub(spent).unwrap_or(self.deadline);
        self
    }

    /// Takes `n` from `left`, or refuses naming `what` and its limit.
    fn take(left: &mut usize, n: usize, what: &str, limit: usize) -> Result<(), Refused> {
        *left = left
            .checked_sub(n)
            .ok_or_else(|| Refused::Count(format!("more than {limit} {what}")))?;
        Ok(())
    }

    pub(super) fn file(&mut self) -> Result<(), Refused> {
        self.time()?;
        Self::take(&mut self.files, 1, "configuration files", Self::FILES)
    }

    pub(super) fn lines(&mut self, n: usize) -> Result<(), Refused> {
        Self::take(&mut self.lines, n, "configuration lines", Self::LINES)
    }

    pub(super) fn name(&mut self) -> Result<(), Refused> {
        if self.names.is_multiple_of(1024) {
            self.time()?;
        }
        Self::take(&mut self.names, 1, "directory entries", Self::NAMES)
    }

    pub(super) fn time(&self) -> Result<(), Refused> {
        if Instant::now() > self.deadline {
            return Err(Refused::Time(format!(
                "reading the image took more than {} s",
                Self::TIME.as_secs()
            )));
        }
        Ok(())
    }
}
