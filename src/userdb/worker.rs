//! User database lookups (getpwuid, getgrouplist) off the event loop.
//!
//! NSS may be files, but it may also be LDAP or sssd, where one lookup can
//! take seconds. Done on the loop, that froze every client of the bus. Here
//! one worker thread asks NSS; the connection that needs the answer waits
//! (see [`super::UserDb`]) and the loop is woken by the notifier the daemon
//! installed with [`set_notify`] when the answer arrives. One thread: a
//! stuck NSS delays only the connections of users not yet known, and a
//! crowd of them cannot start unbounded threads. Each uid is asked at most
//! once at a time (the cache keeps the set of uids in flight).

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::OnceLock;

/// What NSS said about one uid (plain data, sent back to the loop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The uid asked about.
    pub uid: u32,
    /// The login name (None: no such user).
    pub name: Option<String>,
    /// The primary group and every supplementary group, sorted, without
    /// duplicates; empty when the user is unknown.
    pub gids: Vec<u32>,
}

/// Asks the system user database (NSS) about `uid`. Blocks for as long as
/// NSS takes: call it on the worker, never on the event loop.
pub fn ask_nss(uid: u32) -> Answer {
    let mut gids = Vec::new();
    let mut name = None;
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        if let Ok(cname) = std::ffi::CString::new(u.name.clone()) {
            if let Ok(g) = nix::unistd::getgrouplist(&cname, u.gid) {
                gids.extend(g.into_iter().map(|g| g.as_raw()));
            }
        }
        gids.push(u.gid.as_raw());
        name = Some(u.name);
    }
    gids.sort_unstable();
    gids.dedup();
    Answer { uid, name, gids }
}

static NOTIFY: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

/// Installs what the worker calls after each answer, to wake the event
/// loop. Only the first call has an effect.
pub fn set_notify(f: Box<dyn Fn() + Send + Sync>) {
    let _ = NOTIFY.set(f);
}

/// What [`Worker::try_answer`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// An answer.
    Answer(Answer),
    /// Nothing yet.
    Nothing,
    /// The thread is gone (it never exits while the loop's end is alive,
    /// unless NSS made it panic).
    WorkerGone,
}

/// The loop's end of the worker thread.
#[derive(Debug)]
pub struct Worker {
    jobs: Sender<u32>,
    answers: Receiver<Answer>,
}

impl Worker {
    /// Starts the thread (None if it cannot be started).
    pub fn spawn() -> Option<Worker> {
        let (jobs, job_rx) = mpsc::channel::<u32>();
        let (answer_tx, answers) = mpsc::channel::<Answer>();
        std::thread::Builder::new()
            .name("busbar-userdb".into())
            .spawn(move || {
                for uid in job_rx {
                    if answer_tx.send(ask_nss(uid)).is_err() {
                        return;
                    }
                    if let Some(n) = NOTIFY.get() {
                        n();
                    }
                }
            })
            .ok()?;
        Some(Worker { jobs, answers })
    }

    /// Queues a lookup of `uid`; false if the worker is gone.
    pub fn ask(&self, uid: u32) -> bool {
        self.jobs.send(uid).is_ok()
    }

    /// An answer that has arrived, if any.
    pub fn try_answer(&self) -> Received {
        match self.answers.try_recv() {
            Ok(a) => Received::Answer(a),
            Err(TryRecvError::Empty) => Received::Nothing,
            Err(TryRecvError::Disconnected) => Received::WorkerGone,
        }
    }

    /// Blocks until an answer arrives (tests and tools, never the loop).
    pub fn wait_answer(&self) -> Option<Answer> {
        self.answers.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_through_the_worker() {
        let w = Worker::spawn().expect("thread");
        assert!(w.ask(0));
        let a = w.wait_answer().expect("an answer");
        assert_eq!(a, ask_nss(0));
        assert_eq!(a.name.as_deref(), Some("root"));
        assert!(a.gids.contains(&0));
        assert_eq!(w.try_answer(), Received::Nothing);
    }

    #[test]
    fn unknown_user_has_no_groups() {
        let a = ask_nss(3_999_999_999);
        assert!(a.name.is_none());
        assert!(a.gids.is_empty());
    }
}
