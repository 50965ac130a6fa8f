//! Turn-taking on devices whose driver context admits one thread at a time.
//!
//! wgpu's GL backend guards each device's GL context with a lock that it waits on for only a
//! few seconds before it panics ("Could not lock adapter context"). A software GL driver runs a
//! submit's compute work inside the submit, under that lock, so one thread's long submit made
//! another thread's buffer upload panic. Every use of a GL device by wgformer, including the
//! drops that free GL objects, first takes the device's turn here, which waits as long as it
//! must: the waiting happens in our lock, never in wgpu's. Other backends have no turns.

use parking_lot::{ReentrantMutex, ReentrantMutexGuard};
use std::mem::ManuallyDrop;
use std::sync::Arc;

/// The turn lock of one device (`None` where the backend needs none). Reentrant, so a call that
/// holds the turn may call others that take it again.
#[derive(Clone, Debug, Default)]
pub(crate) struct Turns(Option<Arc<ReentrantMutex<()>>>);

impl Turns {
    /// Turns for a device of `backend`: only GL contexts admit one thread at a time.
    pub(crate) fn for_backend(backend: wgpu::Backend) -> Self {
        // In a browser there is one thread, and WebGL's context is the page's.
        let needed = backend == wgpu::Backend::Gl && cfg!(not(target_arch = "wasm32"));
        Turns(needed.then(|| Arc::new(ReentrantMutex::new(()))))
    }

    /// Waits for the device's turn and keeps it until the returned guard drops.
    pub(crate) fn take(&self) -> Turn<'_> {
        Turn(self.0.as_ref().map(|m| m.lock()))
    }
}

/// The device's turn, held until dropped (see [`crate::Gpu::turn`]).
#[must_use = "the turn ends when this guard drops"]
pub struct Turn<'a>(#[allow(dead_code)] Option<ReentrantMutexGuard<'a, ()>>);

/// A wgpu object whose drop may free a driver object, so it drops during its device's turn.
/// Derefs to the object.
pub struct Held<T> {
    value: ManuallyDrop<T>,
    turns: Turns,
}

impl<T> Held<T> {
    pub(crate) fn new(value: T, turns: &Turns) -> Self {
        Held { value: ManuallyDrop::new(value), turns: turns.clone() }
    }
}

impl<T> std::ops::Deref for Held<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Clone> Clone for Held<T> {
    fn clone(&self) -> Self {
        Held { value: self.value.clone(), turns: self.turns.clone() }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Held<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        let _turn = self.turns.take();
        // SAFETY: `value` is dropped exactly once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.value) }
    }
}
