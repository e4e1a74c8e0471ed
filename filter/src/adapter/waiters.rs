//! Requests paused until their provider's keys are refetched (a token with an unknown `kid`),
//! per worker VM. Bounded per provider: beyond the bound a request is decided at once.
//!
//! Uses nothing of the crate but `std`: the waiting request's headers are kept as owned text.

/// One paused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    /// The stream to answer (`set_effective_context`).
    pub context_id: u32,
    pub provider: usize,
    /// Host time (s) after which it is decided on whatever keys there are.
    pub deadline: i64,
    pub headers: Vec<(String, String)>,
}

/// The paused requests of one VM.
#[derive(Debug, Default)]
pub struct Waiters {
    list: Vec<Waiter>,
}

impl Waiters {
    /// Adds `w` unless `max` requests already wait for its provider. False when refused.
    pub fn push(&mut self, w: Waiter, max: usize) -> bool {
        let waiting = self
            .list
            .iter()
            .filter(|x| x.provider == w.provider)
            .count();
        if waiting >= max {
            return false;
        }
        self.list.push(w);
        true
    }

    /// Removes and returns the requests waiting for provider `p` (every provider: `None`).
    pub fn take_provider(&mut self, p: Option<usize>) -> Vec<Waiter> {
        let (ready, rest) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|x| p.is_none_or(|p| x.provider == p));
        self.list = rest;
        ready
    }

    /// Removes and returns the requests whose deadline has passed at `now`.
    pub fn take_expired(&mut self, now: i64) -> Vec<Waiter> {
        let (ready, rest) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|x| x.deadline <= now);
        self.list = rest;
        ready
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.list.len()
    }
}
