//! `Gpu`: adapter options, size limits, upload and readback (f32 and f16).

use crate::common;
use common::for_each_gpu;
use wgformer::{gpu::parse_backend, Error};

#[test]
fn backend_names_parse_and_bad_ones_are_errors() {
    assert_eq!(parse_backend("Vulkan").unwrap(), wgformer::wgpu::Backend::Vulkan);
    assert_eq!(parse_backend("gl").unwrap(), wgformer::wgpu::Backend::Gl);
    assert_eq!(parse_backend("dx12").unwrap(), wgformer::wgpu::Backend::Dx12);
    assert_eq!(parse_backend("metal").unwrap(), wgformer::wgpu::Backend::Metal);
    let err = parse_backend("cuda").unwrap_err();
    assert!(err.to_string().contains("WGFORMER_BACKEND"), "{err}");
}

#[test]
fn missing_adapter_error_says_how_to_get_one() {
    let opts = wgformer::GpuOptions {
        backend: None,
        adapter: Some("no such adapter name".into()),
        ordinal: None,
        ..Default::default()
    };
    let err = wgformer::Gpu::with_options(&opts).err().expect("no adapter has that name");
    let msg = err.to_string();
    assert!(matches!(err, Error::NoAdapter(_)), "{msg}");
    assert!(msg.contains("mesa-vulkan-drivers"), "{msg}");
}

#[test]
fn tensors_over_the_binding_limit_are_refused_by_name() {
    for_each_gpu(|gpu| {
        let max = gpu.limits.max_storage_buffer_binding_size as usize;
        let err = gpu.zeros("huge", max / 4 + 1).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("huge") && msg.contains("max_storage_buffer_binding_size"), "{msg}");
    });
}

#[test]
fn upload_and_read_back_f32_f16_and_empty() {
    for_each_gpu(|gpu| {
        let data: Vec<f32> = (0..1001).map(|i| i as f32 * 0.25 - 100.0).collect();
        let t = gpu.upload("data", &data).unwrap();
        assert_eq!(gpu.read(&t).unwrap(), data);
        let empty = gpu.zeros("empty", 0).unwrap();
        assert!(gpu.read(&empty).unwrap().is_empty());
        assert!(gpu.write(&t, &data[..10]).is_err(), "length mismatch must be an error");
        match gpu.upload_f16("half", &data) {
            // Every value here is exact in f16 (multiples of 1/4 below 2048).
            Ok(h) => assert_eq!(gpu.read(&h).unwrap(), data),
            Err(e) => assert!(!gpu.caps.f16, "f16 upload failed on an f16 adapter: {e}"),
        }
    });
}

#[test]
fn info_report_names_the_chosen_adapter_and_limits() {
    for_each_gpu(|gpu| {
        let report = wgformer::info::report(&wgformer::gpu::adapter_summaries(), gpu).unwrap();
        assert_eq!(report.chosen.name, gpu.info.name);
        let text = wgformer::info::report_text(&report);
        assert!(text.contains("max_storage_buffer_binding_size"), "{text}");
        let attention = if gpu.is_cpu() { "attention: fused" } else { "attention: composed" };
        assert!(text.contains(attention), "{text}");
        assert!(text.contains("kernel choices: "), "{text}");
    });
}

#[test]
fn a_lost_device_is_an_error_not_a_panic() {
    use wgformer::runtime::exec::{Executor, HostData, StepOptions};
    for_each_gpu(|shared| {
        // A device of its own: the other tests keep theirs.
        let opts = wgformer::GpuOptions {
            backend: Some(shared.info.backend),
            adapter: Some(shared.info.name.clone()),
            ordinal: None,
            settings: shared.settings.clone(),
        };
        let gpu = wgformer::Gpu::with_options(&opts).unwrap();
        let mut g = wgformer::graph::Graph::new();
        let x = g.input("x", &[2, 3], wgformer::graph::Dtype::F32);
        let y = g.gelu(x, wgformer::graph::GeluKind::Tanh).unwrap();
        let exec = Executor::keeping(&gpu, g, None, None, &[y]).unwrap();
        let t = gpu.upload("t", &[1.0, 2.0]).unwrap();
        exec.set(&gpu, x, HostData::F32(&[0.5; 6])).unwrap();
        exec.step(&gpu, &[], &StepOptions::default()).unwrap();

        gpu.device.destroy();
        let lost = |what: &str, r: wgformer::Result<()>| {
            let err = r.expect_err(what);
            assert!(err.is_device_lost(), "{what}: {err}");
            assert!(err.to_string().contains("--resume"), "{err}");
        };
        lost("wait", gpu.wait());
        lost("read", gpu.read(&t).map(drop));
        lost("upload", gpu.upload("after", &[1.0]).map(drop));
        lost("step", exec.step(&gpu, &[], &StepOptions::default()).map(drop));
        lost("new executor", {
            let mut g = wgformer::graph::Graph::new();
            let x = g.input("x", &[4], wgformer::graph::Dtype::F32);
            let y = g.gelu(x, wgformer::graph::GeluKind::Tanh).unwrap();
            Executor::keeping(&gpu, g, None, None, &[y]).map(drop)
        });
    });
}
