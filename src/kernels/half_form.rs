//! A family's f16-storage forms (`shaders::with_f16`): one module per set of its aliases made
//! f16, compiled on first use (devices without f16 shaders never build one), and their
//! pipelines per entry point and constants.

use super::f16_forms::F16Family;
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};
use std::sync::Mutex;

/// A bit per alias of a form: set where that alias is f16.
type Mask = u32;

pub(crate) struct HalfForm {
    file: &'static str,
    source: &'static str,
    aliases: Vec<&'static str>,
    /// Compiled without bounds checks (see `Gpu::shader_unchecked`), as the f32 form is.
    unchecked: bool,
    modules: Mutex<Vec<(Mask, wgpu::ShaderModule)>>,
    pipelines: Mutex<Vec<(Mask, String, wgpu::ComputePipeline)>>,
}

impl HalfForm {
    /// The forms of `family` (`kernels::f16_forms`), whose aliases (each an `alias X = f32;` or
    /// `vec4<f32>` declaration) may be made f16 independently of one another.
    pub(crate) fn new(family: &'static F16Family) -> Self {
        HalfForm {
            file: family.file,
            source: family.source,
            aliases: family.aliases.iter().map(|a| a.name).collect(),
            unchecked: false,
            modules: Default::default(),
            pipelines: Default::default(),
        }
    }

    /// The forms of a source whose every index is clamped, compiled without bounds checks.
    pub(crate) fn without_bounds_checks(self) -> Self {
        HalfForm { unchecked: true, ..self }
    }

    /// `f32_form` for an f32 `input`, else the pipeline of `entry` where the first alias is
    /// f16: the choice of a family with one tensor that may be f16.
    pub(crate) fn for_input(
        &self,
        gpu: &Gpu,
        input: &Tensor,
        f32_form: &wgpu::ComputePipeline,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        self.for_types(gpu, &[input], f32_form, entry, constants)
    }

    /// The pipeline of `entry` where alias `i` is f16 exactly where `tensors[i]` is (aliases
    /// past `tensors` stay f32); `f32_form` where none is.
    pub(crate) fn for_types(
        &self,
        gpu: &Gpu,
        tensors: &[&Tensor],
        f32_form: &wgpu::ComputePipeline,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        Ok(self.for_halves(gpu, tensors, entry, constants)?.unwrap_or_else(|| f32_form.clone()))
    }

    /// [`HalfForm::for_types`] for families that build their f32 pipelines lazily: `None`
    /// where every tensor is f32.
    pub(crate) fn for_halves(
        &self,
        gpu: &Gpu,
        tensors: &[&Tensor],
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<Option<wgpu::ComputePipeline>> {
        if tensors.len() > self.aliases.len() {
            let message = format!("{} tensors typed for {} f16 aliases", tensors.len(), self.aliases.len());
            return Err(Error::Shader { file: self.file.to_string(), message });
        }
        let mask = tensors.iter().enumerate().filter(|(_, t)| t.dtype == DType::F16).fold(0, |m, (i, _)| m | 1 << i);
        match mask {
            0 => Ok(None),
            mask => self.form(gpu, mask, entry, constants).map(Some),
        }
    }

    /// The pipeline of `entry` where the aliases in `mask` are f16; an error naming the
    /// adapter where it has no f16 shaders.
    fn form(&self, gpu: &Gpu, mask: Mask, entry: &str, constants: &[(&str, f64)]) -> Result<wgpu::ComputePipeline> {
        let key = format!("{entry} {constants:?}");
        // Held while compiling, so that two threads never build the same form twice.
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, p)) = cache.iter().find(|(m, k, _)| *m == mask && *k == key) {
            return Ok(p.clone());
        }
        if !gpu.caps.f16 {
            return Err(Error::Unsupported { what: "f16 storage (SHADER_F16)", adapter: gpu.describe() });
        }
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        let module = match modules.iter().find(|(m, _)| *m == mask) {
            Some((_, module)) => module.clone(),
            None => {
                let halves: Vec<&str> =
                    self.aliases.iter().enumerate().filter(|(i, _)| mask & 1 << i != 0).map(|(_, a)| *a).collect();
                let source = crate::shaders::with_f16(self.file, self.source, &halves)?;
                let module = match self.unchecked {
                    true => gpu.shader_unchecked(self.file, &source)?,
                    false => gpu.shader(self.file, &source)?,
                };
                modules.push((mask, module.clone()));
                module
            }
        };
        let p = gpu.pipeline(&module, entry, constants)?;
        cache.push((mask, key, p.clone()));
        Ok(p)
    }
}
