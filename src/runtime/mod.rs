//! Running graphs on a device, in the order a step is made: the executor lowers every node of a
//! differentiated, planned graph to kernel dispatches and runs a whole step in one submit
//! ([`exec`]), with Adam and its schedules ([`optim`]) and mixed precision's loss scale
//! ([`loss_scale`]); [`metrics`] records a run's steps and evaluations; [`trainer`] drives steps (over a `dist` group's ranks when there are
//! several), [`checkpoint`] saves and restores them; [`attention_choice`] measures fused against
//! composed attention; [`fault`] injects failures for tests.

pub mod attention_choice;
pub mod chart;
pub mod checkpoint;
pub mod exec;
pub mod fault;
pub mod loss_scale;
pub mod metrics;
pub mod optim;
pub mod trainer;
