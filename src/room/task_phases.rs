//! Which room tasks are alive and what each is doing: a count that a
//! panic or an early return cannot leave wrong (each task holds a guard),
//! and, for a task that does not end, the step it is stuck in. A room that
//! has left the registry but whose task lives on is otherwise invisible.

use crate::ids::RoomId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The step of its life a room task is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taking commands.
    Open,
    /// Finishing its recordings' files.
    FinishingRecordings,
    /// Letting its participants go.
    ReleasingParticipants,
    /// Stopping its pipeline and handing memory back.
    DroppingMedia,
}

#[derive(Debug, Default, Clone)]
pub struct RoomTasks(Arc<Mutex<HashMap<u64, (RoomId, Phase)>>>);

impl RoomTasks {
    /// Counts the task of room `generation` until the guard is dropped.
    pub fn start(&self, id: RoomId, generation: u64) -> RoomTaskGuard {
        self.map().insert(generation, (id, Phase::Open));
        RoomTaskGuard {
            tasks: self.clone(),
            generation,
        }
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// "room#generation: phase" for every live task, oldest first.
    pub fn describe(&self) -> Vec<String> {
        let mut tasks: Vec<_> = self
            .map()
            .iter()
            .map(|(generation, (id, phase))| (*generation, format!("{id}#{generation}: {phase:?}")))
            .collect();
        tasks.sort();
        tasks.into_iter().map(|(_, text)| text).collect()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (RoomId, Phase)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One live room task.
#[derive(Debug)]
pub struct RoomTaskGuard {
    tasks: RoomTasks,
    generation: u64,
}

impl RoomTaskGuard {
    pub fn enter(&self, phase: Phase) {
        if let Some(entry) = self.tasks.map().get_mut(&self.generation) {
            entry.1 = phase;
        }
    }
}

impl Drop for RoomTaskGuard {
    fn drop(&mut self) {
        self.tasks.map().remove(&self.generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_listed_with_its_phase_until_its_guard_goes() {
        let tasks = RoomTasks::default();
        let a = tasks.start(RoomId::parse("a").unwrap(), 1);
        let b = tasks.start(RoomId::parse("b").unwrap(), 2);
        b.enter(Phase::DroppingMedia);
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks.describe(), ["a#1: Open", "b#2: DroppingMedia"]);
        drop(a);
        std::thread::spawn(move || drop(b)).join().unwrap();
        assert_eq!(tasks.len(), 0);
    }
}
