//! Fault injection for tests: named points in nvc's steps where a test can make the step
//! fail with a chosen errno, or act at exactly that moment (the way a hostile container
//! process racing nvc would).
//!
//! Compiled in only with the `fault-injection` feature, which nvc's own test builds turn
//! on; without it [`point`] is an empty inline function and nothing here exists at run time.
//!
//! A hook belongs to the thread that installs it (`with_hook`) and to the threads nvc
//! starts for that work (which take it along with [`carry`]), so tests running in parallel
//! never see each other's faults.

use std::path::Path;

use nix::errno::Errno;

#[cfg(feature = "fault-injection")]
mod imp {
    use std::cell::RefCell;
    use std::path::Path;
    use std::sync::Arc;

    use nix::errno::Errno;

    /// What a test runs at each point: `Some(errno)` makes the step fail.
    pub type Hook = Arc<dyn Fn(&str, &Path) -> Option<Errno> + Send + Sync>;

    thread_local! {
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    pub fn current() -> Option<Hook> {
        HOOK.with(|h| h.borrow().clone())
    }

    pub fn scoped<R>(hook: Option<Hook>, work: impl FnOnce() -> R) -> R {
        struct Restore(Option<Hook>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let before = self.0.take();
                HOOK.with(|h| *h.borrow_mut() = before);
            }
        }
        let before = HOOK.with(|h| h.replace(hook));
        let _restore = Restore(before);
        work()
    }
}

/// Runs `work` with `hook` called at every fault point reached on this thread and on the
/// threads nvc starts for it. The hook gets the point's name and the path the step works on
/// and returns the errno the step fails with, or `None` to let it go on.
#[cfg(feature = "fault-injection")]
pub fn with_hook<R>(
    hook: impl Fn(&str, &Path) -> Option<Errno> + Send + Sync + 'static,
    work: impl FnOnce() -> R,
) -> R {
    imp::scoped(Some(std::sync::Arc::new(hook)), work)
}

/// The calling thread's hook, to take along to a thread started for the same work.
#[derive(Clone, Default)]
pub struct Carried(#[cfg(feature = "fault-injection")] Option<imp::Hook>);

impl std::fmt::Debug for Carried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Carried")
    }
}

/// The calling thread's hook (nothing without the `fault-injection` feature).
#[must_use]
pub fn carry() -> Carried {
    #[cfg(feature = "fault-injection")]
    return Carried(imp::current());
    #[cfg(not(feature = "fault-injection"))]
    Carried()
}

impl Carried {
    /// Runs `work` on this thread with the carried hook installed.
    pub fn enter<R>(self, work: impl FnOnce() -> R) -> R {
        #[cfg(feature = "fault-injection")]
        return imp::scoped(self.0, work);
        #[cfg(not(feature = "fault-injection"))]
        work()
    }
}

/// A fault point named `name` in a step working on `subject` (a container path, a cgroup):
/// the step fails with the hook's errno, if it gives one.
///
/// # Errors
///
/// The errno the test's hook chose; never without the `fault-injection` feature.
#[inline]
pub fn point(name: &str, subject: &Path) -> Result<(), Errno> {
    #[cfg(feature = "fault-injection")]
    if let Some(hook) = imp::current()
        && let Some(errno) = hook(name, subject)
    {
        return Err(errno);
    }
    let _ = (name, subject);
    Ok(())
}
