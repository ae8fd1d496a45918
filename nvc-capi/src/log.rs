//! The debug log upstream writes to `NVC_DEBUG_FILE` (the CLI's `--debug`): opened in
//! append mode by `nvc_init`, closed by `nvc_shutdown`, one glog-style line per event
//! (`I1203 09:31:56.123456 4242 context.rs:88] ...`, UTC).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

static LOG: Mutex<Option<File>> = Mutex::new(None);

/// Opens the log named by `NVC_DEBUG_FILE`, if any and not open yet. A file that cannot be
/// opened leaves logging off (upstream asserts).
pub(crate) fn open() {
    let Some(path) = std::env::var_os("NVC_DEBUG_FILE") else {
        return;
    };
    let mut log = LOG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if log.is_some() {
        return;
    }
    if let Ok(mut f) = OpenOptions::new().append(true).create(true).open(path) {
        let _ =
            f.write_all(b"\n-- WARNING, the following logs are for debugging purposes only --\n\n");
        *log = Some(f);
    }
}

/// Closes the log.
pub(crate) fn close() {
    *LOG.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

/// Writes one line at `level` (`I`, `W`, `E`) for `file:line`.
pub(crate) fn write(level: char, file: &str, line: u32, msg: &str) {
    let mut log = LOG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(f) = log.as_mut() else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (_, month, day) = civil(secs / 86_400);
    let t = secs % 86_400;
    let base = file.rsplit('/').next().unwrap_or(file);
    let _ = writeln!(
        f,
        "{level}{month:02}{day:02} {:02}:{:02}:{:02}.{:06} {} {base}:{line}] {msg}",
        t / 3600,
        t / 60 % 60,
        t % 60,
        now.subsec_micros(),
        std::process::id(),
    );
}

/// (year, month, day) of a day count since 1970-01-01 (Hinnant's civil_from_days).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Logs a formatted info line.
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write('I', file!(), line!(), &format!($($arg)*)) };
}

/// Logs a formatted error line.
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write('E', file!(), line!(), &format!($($arg)*)) };
}

pub(crate) use {error, info};

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1));
        assert_eq!(super::civil(20_425), (2025, 12, 3));
        assert_eq!(super::civil(11_016), (2000, 2, 29));
    }
}
