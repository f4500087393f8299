//! The name registry: well-known names, their owner queues, and the
//! RequestName/ReleaseName state machine with dbus-daemon's semantics
//! (bus/services.c). Operations return the signals to emit, in order.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// RequestName flag: the owner lets others replace it.
pub const ALLOW_REPLACEMENT: u32 = 0x1;
/// RequestName flag: take the name from a replaceable owner.
pub const REPLACE_EXISTING: u32 = 0x2;
/// RequestName flag: do not wait in the queue.
pub const DO_NOT_QUEUE: u32 = 0x4;

/// RequestName replies.
pub mod request_reply {
    /// PRIMARY_OWNER
    pub const PRIMARY_OWNER: u32 = 1;
    /// IN_QUEUE
    pub const IN_QUEUE: u32 = 2;
    /// EXISTS
    pub const EXISTS: u32 = 3;
    /// ALREADY_OWNER
    pub const ALREADY_OWNER: u32 = 4;
}

/// ReleaseName replies.
pub mod release_reply {
    /// RELEASED
    pub const RELEASED: u32 = 1;
    /// NON_EXISTENT
    pub const NON_EXISTENT: u32 = 2;
    /// NOT_OWNER
    pub const NOT_OWNER: u32 = 3;
}

/// A signal the registry asks the bus to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameEvent {
    /// NameOwnerChanged (broadcast).
    OwnerChanged {
        /// the name
        name: Rc<str>,
        /// previous primary owner
        old: Option<u64>,
        /// new primary owner
        new: Option<u64>,
    },
    /// NameAcquired to `peer`.
    Acquired {
        /// recipient
        peer: u64,
        /// the name
        name: Rc<str>,
    },
    /// NameLost to `peer`.
    Lost {
        /// recipient
        peer: u64,
        /// the name
        name: Rc<str>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Owner {
    peer: u64,
    flags: u32,
}

/// All well-known names.
#[derive(Debug, Default)]
pub struct Registry {
    names: HashMap<Rc<str>, VecDeque<Owner>>,
}

impl Registry {
    /// Every name with its queue, primary owner first: (connection, flags).
    pub fn entries(&self) -> impl Iterator<Item = (&Rc<str>, Vec<(u64, u32)>)> + '_ {
        self.names
            .iter()
            .map(|(n, q)| (n, q.iter().map(|o| (o.peer, o.flags)).collect()))
    }

    /// Puts back a name with its queue as [`Registry::entries`] gave it
    /// (restoring a snapshot); an empty queue is ignored.
    pub fn restore(&mut self, name: &str, queue: &[(u64, u32)]) {
        if queue.is_empty() {
            return;
        }
        let q = queue
            .iter()
            .map(|&(peer, flags)| Owner { peer, flags })
            .collect();
        self.names.insert(Rc::from(name), q);
    }

    /// The primary owner of `name`.
    pub fn owner(&self, name: &str) -> Option<u64> {
        self.names.get(name).and_then(|q| q.front()).map(|o| o.peer)
    }

    /// The queue of owners (primary first).
    pub fn queue(&self, name: &str) -> Option<Vec<u64>> {
        self.names
            .get(name)
            .map(|q| q.iter().map(|o| o.peer).collect())
    }

    /// Every well-known name that has an owner.
    pub fn names(&self) -> impl Iterator<Item = &Rc<str>> {
        self.names.keys()
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no names.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The interned key for `name`, if it exists.
    pub fn key(&self, name: &str) -> Option<Rc<str>> {
        self.names.get_key_value(name).map(|(k, _)| k.clone())
    }

    /// RequestName after the caller checked validity, policy and limits.
    /// Returns the reply code and the signals to send, and whether `peer`
    /// newly entered the name's queue (so the caller can record it).
    pub fn request(
        &mut self,
        name: &str,
        peer: u64,
        flags: u32,
        events: &mut Vec<NameEvent>,
    ) -> u32 {
        let Some((key, q)) = self
            .names
            .get_key_value(name)
            .map(|(k, _)| k.clone())
            .and_then(|k| {
                let q = self.names.get_mut(&k)?;
                Some((k, q))
            })
        else {
            let key: Rc<str> = Rc::from(name);
            let mut q = VecDeque::new();
            q.push_back(Owner { peer, flags });
            self.names.insert(key.clone(), q);
            events.push(NameEvent::OwnerChanged {
                name: key.clone(),
                old: None,
                new: Some(peer),
            });
            events.push(NameEvent::Acquired { peer, name: key });
            return request_reply::PRIMARY_OWNER;
        };
        let primary = q[0];
        if primary.peer == peer {
            q[0].flags = flags;
            return request_reply::ALREADY_OWNER;
        }
        let allow_replacement = primary.flags & ALLOW_REPLACEMENT != 0;
        let replace = flags & REPLACE_EXISTING != 0;
        let no_queue = flags & DO_NOT_QUEUE != 0;
        if no_queue && (!allow_replacement || !replace) {
            q.retain(|o| o.peer != peer);
            return request_reply::EXISTS;
        }
        if !no_queue && (!replace || !allow_replacement) {
            add_owner(q, peer, flags);
            return request_reply::IN_QUEUE;
        }
        // Replace the primary owner.
        add_owner(q, peer, flags);
        // `peer` is now second in the queue.
        events.push(NameEvent::Lost {
            peer: primary.peer,
            name: key.clone(),
        });
        events.push(NameEvent::OwnerChanged {
            name: key.clone(),
            old: Some(primary.peer),
            new: Some(peer),
        });
        events.push(NameEvent::Acquired { peer, name: key });
        let old = q.pop_front();
        if let Some(old) = old {
            if old.flags & DO_NOT_QUEUE == 0 {
                q.insert(1.min(q.len()), old);
            }
        }
        request_reply::PRIMARY_OWNER
    }

    /// Whether `peer` is primary owner or queued for `name`.
    pub fn in_queue(&self, name: &str, peer: u64) -> bool {
        self.names
            .get(name)
            .is_some_and(|q| q.iter().any(|o| o.peer == peer))
    }

    /// Removes `peer` from `name`'s queue (ReleaseName, or disconnect).
    /// Returns false if it was not there.
    pub fn remove(&mut self, name: &str, peer: u64, events: &mut Vec<NameEvent>) -> bool {
        let Some(key) = self.key(name) else {
            return false;
        };
        let Some(q) = self.names.get_mut(name) else {
            return false;
        };
        let Some(pos) = q.iter().position(|o| o.peer == peer) else {
            return false;
        };
        if pos > 0 {
            q.remove(pos);
            return true;
        }
        events.push(NameEvent::Lost {
            peer,
            name: key.clone(),
        });
        q.pop_front();
        match q.front() {
            None => {
                events.push(NameEvent::OwnerChanged {
                    name: key.clone(),
                    old: Some(peer),
                    new: None,
                });
                self.names.remove(name);
            }
            Some(next) => {
                let next = next.peer;
                events.push(NameEvent::OwnerChanged {
                    name: key.clone(),
                    old: Some(peer),
                    new: Some(next),
                });
                events.push(NameEvent::Acquired {
                    peer: next,
                    name: key,
                });
            }
        }
        true
    }
}

fn add_owner(q: &mut VecDeque<Owner>, peer: u64, flags: u32) {
    if let Some(pos) = q.iter().position(|o| o.peer == peer) {
        let mut o = q.remove(pos).unwrap_or(Owner { peer, flags });
        o.flags = flags;
        if flags & REPLACE_EXISTING != 0 {
            q.insert(1.min(q.len()), o);
        } else {
            q.insert(pos.min(q.len()), o);
        }
    } else if flags & REPLACE_EXISTING != 0 && !q.is_empty() {
        q.insert(1, Owner { peer, flags });
    } else {
        q.push_back(Owner { peer, flags });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queueing_and_replacement() {
        let mut r = Registry::default();
        let mut ev = Vec::new();
        assert_eq!(
            r.request("a.b", 1, ALLOW_REPLACEMENT, &mut ev),
            request_reply::PRIMARY_OWNER
        );
        assert_eq!(ev.len(), 2);
        ev.clear();
        assert_eq!(
            r.request("a.b", 1, 0, &mut ev),
            request_reply::ALREADY_OWNER
        );
        // owner 1 no longer allows replacement
        assert_eq!(
            r.request("a.b", 2, REPLACE_EXISTING, &mut ev),
            request_reply::IN_QUEUE
        );
        assert_eq!(
            r.request("a.b", 3, DO_NOT_QUEUE, &mut ev),
            request_reply::EXISTS
        );
        assert_eq!(r.queue("a.b").unwrap(), vec![1, 2]);
        assert!(ev.is_empty());
        assert!(r.remove("a.b", 1, &mut ev));
        assert_eq!(r.owner("a.b"), Some(2));
        assert_eq!(ev.len(), 3);
        ev.clear();
        r.request("a.b", 2, ALLOW_REPLACEMENT, &mut ev);
        assert_eq!(
            r.request("a.b", 4, REPLACE_EXISTING, &mut ev),
            request_reply::PRIMARY_OWNER
        );
        assert_eq!(r.queue("a.b").unwrap(), vec![4, 2]);
        assert!(matches!(ev[0], NameEvent::Lost { peer: 2, .. }));
        ev.clear();
        assert!(r.remove("a.b", 4, &mut ev));
        assert!(r.remove("a.b", 2, &mut ev));
        assert_eq!(r.owner("a.b"), None);
        assert!(r.is_empty());
    }
}
