//! Where model work runs: the candle device a `device` option names, and the thread pool of
//! candle's CPU kernels.

use candle_core::Device;

use crate::error::{Error, Result};

/// A device name read: `cpu` is None, `cuda` and `cuda:N` the GPU's ordinal; anything else
/// is not a device name (the outer None).
pub fn parse_device_name(spec: &str) -> Option<Option<usize>> {
    match spec.trim().to_ascii_lowercase().as_str() {
        "cpu" => Some(None),
        "cuda" => Some(Some(0)),
        s => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(Some),
    }
}

/// The candle device for a `device` option: `cpu`, `cuda` or `cuda:N`.
pub fn device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    match parse_device_name(&spec) {
        Some(None) => Ok(Device::Cpu),
        Some(Some(ordinal)) => cuda_device(&spec, ordinal),
        None => Err(Error::Device(format!(
            "unknown device '{spec}'; use 'cpu' or 'cuda:N'"
        ))),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(spec: &str, ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        // The driver's own error, without the backtrace candle attaches under RUST_BACKTRACE.
        let e = match e {
            candle_core::Error::WithBacktrace { inner, .. } => *inner,
            e => e,
        };
        Error::Device(format!("device '{spec}' is not available: {e}"))
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(spec: &str, _ordinal: usize) -> Result<Device> {
    Err(Error::Device(format!(
        "device '{spec}' needs tenure built with --features cuda; this build runs on the CPU only"
    )))
}

/// Sizes the thread pool candle's CPU kernels run on, so model work and DataFusion's
/// threads together do not oversubscribe the cores. Call once, before any model runs; later
/// calls are ignored.
pub fn set_compute_threads(threads: usize) {
    // An error means the global pool already exists, which is fine: it keeps its size.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("tenure-model-{i}"))
        .build_global();
}
