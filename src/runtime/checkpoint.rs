//! Parameters to and from safetensors files under their standard names. A model maps a graph
//! parameter's shape to the shape it is stored with (a Conv2d weight is held flat in the graph).

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::util::io::{read_safetensors, safetensors_bytes};
use std::collections::HashMap;
use std::path::Path;

/// The stored shape of the parameter `name` whose graph shape is `shape`.
pub type StoredShape<'a> = &'a dyn Fn(&str, &[usize]) -> Vec<usize>;

/// Parameter values by tensor.
pub type Params = Vec<(TensorId, Vec<f32>)>;

/// Values for every parameter of `g` from the safetensors file at `path`. Tensors the graph does
/// not use (a pooler, say) are ignored; a missing tensor or a shape that differs is an error
/// naming it.
pub fn load_params(path: &Path, g: &Graph, stored: StoredShape) -> Result<Vec<(TensorId, Vec<f32>)>> {
    params_from(read_safetensors(path)?, path, g, stored)
}

/// [`load_params`] from tensors already read (`path` names their origin in errors).
pub fn params_from(
    tensors: Vec<crate::util::io::NamedTensor>,
    path: &Path,
    g: &Graph,
    stored: StoredShape,
) -> Result<Vec<(TensorId, Vec<f32>)>> {
    let mut file: HashMap<String, crate::util::io::NamedTensor> =
        tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
    let bad = |msg: String| Err(Error::Format { path: path.display().to_string(), msg });
    let params = g.params();
    let missing: Vec<&str> =
        params.iter().map(|&p| g.desc(p).name.as_str()).filter(|n| !file.contains_key(*n)).collect();
    if !missing.is_empty() {
        let shown = missing.iter().take(5).copied().collect::<Vec<_>>().join(", ");
        return bad(format!(
            "{} parameters missing, e.g. {shown}: the checkpoint does not match the config",
            missing.len()
        ));
    }
    let mut out = Vec::with_capacity(params.len());
    for p in params {
        let d = g.desc(p);
        let t = file.remove(&d.name).expect("checked above");
        let want = stored(&d.name, &d.shape);
        if t.shape != want {
            return bad(format!("{} has shape {:?}, the config needs {want:?}", d.name, t.shape));
        }
        out.push((p, t.f32(path)?.to_vec()));
    }
    Ok(out)
}

/// Serialises parameter values under their graph names with their stored shapes.
pub fn params_bytes(g: &Graph, values: &[(TensorId, Vec<f32>)], stored: StoredShape) -> Result<Vec<u8>> {
    let tensors: Vec<(String, Vec<usize>, &[f32])> =
        values.iter().map(|(p, v)| (g.desc(*p).name.clone(), stored(&g.desc(*p).name, g.shape(*p)), &v[..])).collect();
    safetensors_bytes(&tensors)
}

/// What a training run saves besides the weights.
pub struct TrainingState<'a> {
    /// (param, exp_avg, exp_avg_sq).
    pub moments: &'a [(TensorId, Vec<f32>, Vec<f32>)],
    /// trainer_state.json's text.
    pub state_json: String,
    /// Extra files (a plot) as (name, bytes).
    pub extra: Vec<(&'a str, Vec<u8>)>,
    /// Files linked in under a name, not written again: (source, name).
    pub keep: Vec<(crate::util::io::LinkFrom, String)>,
}

/// The element-wise mean of the parameters of `g` stored in several safetensors files
/// (checkpoint averaging, as the paper averages its last checkpoints). Reads one file at a
/// time, so memory holds two copies of the parameters, not one per file.
pub fn average_params(
    paths: &[std::path::PathBuf],
    g: &Graph,
    stored: StoredShape,
) -> Result<Vec<(TensorId, Vec<f32>)>> {
    average_of(paths, &|path: &Path| load_params(path, g, stored))
}

/// [`average_params`] of files `read` turns into parameters (each in the same order).
pub fn average_of(
    paths: &[std::path::PathBuf],
    read: &dyn Fn(&Path) -> Result<Params>,
) -> Result<Vec<(TensorId, Vec<f32>)>> {
    let Some((first, rest)) = paths.split_first() else {
        return Err(Error::Config("averaging needs at least one checkpoint".into()));
    };
    let mut sum = read(first)?;
    for path in rest {
        for ((_, acc), (_, v)) in sum.iter_mut().zip(read(path)?) {
            acc.iter_mut().zip(v).for_each(|(a, b)| *a += b);
        }
    }
    let n = paths.len() as f32;
    for (_, acc) in &mut sum {
        acc.iter_mut().for_each(|a| *a /= n);
    }
    Ok(sum)
}

/// optimizer.safetensors' bytes: `<name>.exp_avg` and `<name>.exp_avg_sq` per parameter.
pub fn moments_bytes(g: &Graph, moments: &[(TensorId, Vec<f32>, Vec<f32>)], stored: StoredShape) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    for (p, m, v) in moments {
        let (name, shape) = (&g.desc(*p).name, stored(&g.desc(*p).name, g.shape(*p)));
        tensors.push((format!("{name}.exp_avg"), shape.clone(), m));
        tensors.push((format!("{name}.exp_avg_sq"), shape, v));
    }
    safetensors_bytes(&tensors)
}

/// Reads optimizer.safetensors: (param, exp_avg, exp_avg_sq) for every parameter of `g`.
pub fn load_moments(dir: &Path, g: &Graph) -> Result<crate::runtime::optim::Moments> {
    load_moments_of(dir, g, &g.params())
}

/// [`load_moments`] of the parameters `params` only (the others are not trained).
pub fn load_moments_of(dir: &Path, g: &Graph, params: &[TensorId]) -> Result<crate::runtime::optim::Moments> {
    let path = dir.join("optimizer.safetensors");
    moments_of(read_safetensors(&path)?, &path, g, params)
}

/// [`load_moments`] from tensors already read (`path` names their origin in errors).
pub fn moments_from(
    tensors: Vec<crate::util::io::NamedTensor>,
    path: &Path,
    g: &Graph,
) -> Result<crate::runtime::optim::Moments> {
    moments_of(tensors, path, g, &g.params())
}

fn moments_of(
    tensors: Vec<crate::util::io::NamedTensor>,
    path: &Path,
    g: &Graph,
    params: &[TensorId],
) -> Result<crate::runtime::optim::Moments> {
    let get = |name: &str, len: usize| -> Result<Vec<f32>> {
        let t = tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::Format { path: path.display().to_string(), msg: format!("no tensor {name}") })?;
        let v = t.f32(path)?;
        if v.len() != len {
            return Err(Error::Format {
                path: path.display().to_string(),
                msg: format!("{name} has {} values, expected {len}", v.len()),
            });
        }
        Ok(v.to_vec())
    };
    params
        .iter()
        .map(|&p| {
            let (name, len) = (&g.desc(p).name, g.desc(p).len());
            Ok((p, get(&format!("{name}.exp_avg"), len)?, get(&format!("{name}.exp_avg_sq"), len)?))
        })
        .collect()
}
