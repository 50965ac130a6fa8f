//! Runs one forward and backward pass of a reference case (the ../shared/golden format:
//! config.json, model.safetensors, inputs.safetensors) and names what it produced the way
//! expected.safetensors does: `logits`, `loss` and `grad.<name>`.

pub mod marian;
pub mod transformer;
pub mod vit;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::runtime::checkpoint::StoredShape;
use crate::runtime::exec::{Executor, HostData, StepOptions};
use crate::util::io::NamedTensor;
use std::path::Path;

/// A named output: name, shape, values.
pub type Output = (String, Vec<usize>, Vec<f32>);

/// What a model's graph needs to run a case.
pub(crate) struct Case<'a> {
    pub loss: TensorId,
    pub logits: TensorId,
    /// The shape `logits` is reported with.
    pub logits_shape: Vec<usize>,
    /// Inputs whose gradients are reported too (ViT's pixels).
    pub wrt: Vec<TensorId>,
    pub feed: &'a [(TensorId, HostData<'a>)],
    pub stored: StoredShape<'a>,
}

/// config.json's text from `dir`.
pub(crate) fn read_config(dir: &Path) -> Result<String> {
    let path = dir.join("config.json");
    std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

/// Forward and backward of the case in `dir`, dispatching on config.json's model_type.
pub fn verify(gpu: &Gpu, dir: &Path) -> Result<Vec<Output>> {
    let config_path = dir.join("config.json");
    let text = read_config(dir)?;
    let model_type = crate::models::model_type(&text).unwrap_or_default();
    match model_type.as_str() {
        "vit" => vit::verify(gpu, dir),
        "transformer" => transformer::verify(gpu, dir),
        "marian" => marian::verify(gpu, dir),
        other => Err(Error::Config(format!(
            "{}: model_type {other:?} is not supported (vit, transformer, marian)",
            config_path.display()
        ))),
    }
}

/// Runs `graph` with `params` on the case's inputs and returns the logits, the loss and every
/// gradient, sorted by name after the first two.
pub(crate) fn run(gpu: &Gpu, mut graph: Graph, params: &[(TensorId, Vec<f32>)], case: &Case) -> Result<Vec<Output>> {
    let grads = crate::graph::autodiff::backward_wrt(&mut graph, case.loss, &case.wrt)?;
    let exec = Executor::keeping(gpu, graph, Some(case.loss), Some(&grads), &[case.logits])?;
    for (p, values) in params {
        exec.set(gpu, *p, HostData::F32(values))?;
    }
    let loss = exec.step(gpu, case.feed, &StepOptions::default())?;
    let g = exec.graph();
    let mut out = vec![
        ("logits".to_string(), case.logits_shape.clone(), exec.read(gpu, case.logits)?),
        ("loss".to_string(), vec![], vec![loss]),
    ];
    let mut named: Vec<(String, TensorId)> = grads.of.iter().map(|(t, d)| (g.desc(*t).name.clone(), *d)).collect();
    named.sort();
    for (name, d) in named {
        let shape = (case.stored)(&name, g.shape(d));
        out.push((format!("grad.{name}"), shape, exec.read(gpu, d)?));
    }
    Ok(out)
}

/// The tensor `name` of an inputs file, or an error naming the file.
pub(crate) fn find<'a>(inputs: &'a [NamedTensor], path: &Path, name: &str) -> Result<&'a NamedTensor> {
    inputs
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::Format { path: path.display().to_string(), msg: format!("no tensor {name}") })
}

/// An integer tensor's values as u32 ids, refusing negatives and non-integer types.
pub(crate) fn ids(t: &NamedTensor, path: &Path) -> Result<Vec<u32>> {
    let bad = |msg: String| Error::Format { path: path.display().to_string(), msg };
    match &t.data {
        crate::util::io::TensorData::I64(v) => v
            .iter()
            .map(|&x| u32::try_from(x).map_err(|_| bad(format!("{} holds {x}, not a u32 id", t.name))))
            .collect(),
        crate::util::io::TensorData::U8(v) => Ok(v.iter().map(|&x| x as u32).collect()),
        _ => Err(bad(format!("{} must be integers", t.name))),
    }
}
