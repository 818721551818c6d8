//! The model: an architecture spec ([`spec`]), the paper's networks as named presets ([`presets`](mod@presets)),
//! the spec laid out for an input size ([`plan`], one [`layer`] at a time) with its backward
//! [`schedule`] and [`memory`] plan, seeded He initialisation ([`init`]), the [`optimizer`]s, and the
//! trainable [`Network`] on any backend ([`network`]), whose parameters leave and enter it as named
//! host [`tensors`].
//!
//! ```no_run
//! use rescnn::backends::cpu::CpuBackend;
//! use rescnn::model::{ArchSpec, InputShape, Network, RmsPropConfig};
//! # fn main() -> rescnn::Result<()> {
//! let cpu = CpuBackend::<f32>::new();
//! let spec = ArchSpec::from_name_or_spec("paper")?;
//! let mut net = Network::new(&cpu, &spec, InputShape::new(3, 128, 128), 7, 8, 42)?;
//! println!("{}", net.summary());
//! let (images, labels) = (vec![0.5f32; 8 * 3 * 128 * 128], vec![0u32; 8]);
//! let stats = net.train_step(&cpu, &images, &labels, &RmsPropConfig::default())?;
//! println!("loss {:.4}, {} correct", stats.mean_loss, stats.correct);
//! # Ok(()) }
//! ```

pub mod cost;
pub mod init;
pub mod layer;
pub mod memory;
pub mod network;
pub mod optimizer;
pub mod plan;
pub mod presets;
pub mod schedule;
pub mod spec;
pub mod tensors;
pub mod width;

pub use layer::{PlannedLayer, PlannedOp};
pub use memory::{memory_plan, MemoryBytes, MemoryPlan};
pub use network::Network;
pub use optimizer::{AdamWConfig, LrSchedule, Optimizer, OptimizerKind, RmsPropConfig};
pub use plan::{InputShape, Plan};
pub use presets::{input_shortcut_sweep, preset, presets, table4, Certainty, Preset};
pub use schedule::BackwardSchedule;
pub use spec::{ArchSpec, LayerSpec};
pub use tensors::{NamedTensor, OptimizerState};
