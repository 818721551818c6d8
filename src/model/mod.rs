//! The model: an architecture spec ([`spec`]), the paper's networks as named presets ([`presets`](mod@presets)),
//! the spec laid out for an input size ([`plan`]), seeded He initialisation ([`init`]) and the
//! trainable [`Network`] on any backend ([`network`]).
//!
//! ```no_run
//! use rescnn::backends::{cpu::CpuBackend, RmsPropConfig};
//! use rescnn::model::{ArchSpec, InputShape, Network};
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
pub mod memory;
pub mod network;
pub mod plan;
pub mod presets;
pub mod spec;

pub use memory::{MemoryBytes, MemoryPlan};
pub use network::{memory_plan, NamedTensor, Network, Optimizer, OptimizerState};
pub use plan::{InputShape, Plan, PlannedLayer, PlannedOp};
pub use presets::{input_shortcut_sweep, preset, presets, table4, Certainty, Preset};
pub use spec::{ArchSpec, LayerSpec};
