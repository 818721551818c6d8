//! The safetensors file of a checkpoint: the tensors under their prefixes, the header's metadata
//! with the tensors' checksum, and every check a file passes before it is used.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use super::{Checkpoint, ModelInfo, TrainerState, FORMAT, METADATA_KEY};
use crate::data::InputNorm;
use crate::model::{NamedTensor, OptimizerState};
use crate::{Error, Result};

/// Tensor name prefixes of the optimizer state.
const RMSPROP: &str = "rmsprop";
const ADAMW_M: &str = "adamw_m";
const ADAMW_V: &str = "adamw_v";

/// Everything of a checkpoint besides its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Header {
    format: String,
    written_by: String,
    model: ModelInfo,
    state: TrainerState,
    /// The optimizer's step count; absent in a weights-only checkpoint.
    optimizer_step: Option<u64>,
    /// [`tensor_checksum`] of the file's tensors, as 8 hex digits; absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tensor_crc32: Option<String>,
}

/// CRC-32 of tensors given as (name, shape, little-endian bytes), taken in name order: each name,
/// a 0 byte, each dimension as a little-endian u64, then the bytes.
fn tensor_checksum<'t>(
    tensors: impl IntoIterator<Item = (&'t str, &'t [usize], &'t [u8])>,
) -> String {
    let mut sorted: Vec<_> = tensors.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut crc = crc32fast::Hasher::new();
    for (name, shape, bytes) in sorted {
        crc.update(name.as_bytes());
        crc.update(&[0]);
        for &d in shape {
            crc.update(&(d as u64).to_le_bytes());
        }
        crc.update(bytes);
    }
    format!("{:08x}", crc.finalize())
}

fn tensor_bytes(t: &NamedTensor<f32>) -> &[u8] {
    bytemuck::cast_slice(&t.data)
}

impl Checkpoint {
    /// The safetensors file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
        fn view(t: &NamedTensor<f32>) -> Result<safetensors::tensor::TensorView<'_>> {
            safetensors::tensor::TensorView::new(Dtype::F32, t.dims.clone(), tensor_bytes(t))
                .map_err(|e| config_err_tensor(&t.name, e))
        }
        for t in &self.params {
            tensors.push((format!("param.{}", t.name), view(t)?));
        }
        if let Some(opt) = &self.optimizer {
            // AdamW's second moment is the same recurrence as RMSProp's mean square, under its own
            // name so that a reader of the file sees which optimizer wrote it.
            let adamw = !opt.first_moment.is_empty();
            let second = if adamw { ADAMW_V } else { RMSPROP };
            for t in &opt.mean_square {
                tensors.push((format!("{second}.{}", t.name), view(t)?));
            }
            for t in &opt.first_moment {
                tensors.push((format!("{ADAMW_M}.{}", t.name), view(t)?));
            }
        }
        // One metadata entry holding one JSON object: safetensors keeps metadata in a HashMap, whose
        // order varies per process, and identical checkpoints should be identical files.
        let checksum = tensor_checksum(
            tensors
                .iter()
                .map(|(name, v)| (name.as_str(), v.shape(), v.data())),
        );
        let header = Header {
            format: FORMAT.to_string(),
            written_by: self.written_by.clone(),
            model: self.model.clone(),
            state: self.state.clone(),
            optimizer_step: self.optimizer.as_ref().map(|o| o.step),
            tensor_crc32: Some(checksum),
        };
        let meta = HashMap::from([(METADATA_KEY.to_string(), json(&header))]);
        safetensors::serialize(tensors, Some(meta))
            .map_err(|e| crate::config_err!("cannot serialise a checkpoint: {e}"))
    }

    /// Parse and check a checkpoint's bytes; the flag says whether it carried a checksum (which
    /// then matched).
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<(Self, bool), String> {
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| format!("not a safetensors file ({e})"))?;
        let meta = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or("the safetensors file has no rescnn metadata")?;
        let head: serde_json::Value =
            serde_json::from_str(meta).map_err(|e| format!("bad rescnn metadata ({e})"))?;
        let format = head.get("format").and_then(|f| f.as_str()).unwrap_or("?");
        if format != FORMAT {
            return Err(format!(
                "checkpoint format `{format}` is not the `{FORMAT}` this rescnn reads"
            ));
        }
        let head: Header =
            serde_json::from_value(head).map_err(|e| format!("bad rescnn metadata ({e})"))?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| format!("the tensors cannot be read ({e})"))?;
        if let Some(expected) = &head.tensor_crc32 {
            let views = st.tensors();
            let actual = tensor_checksum(
                views
                    .iter()
                    .map(|(name, v)| (name.as_str(), v.shape(), v.data())),
            );
            if &actual != expected {
                return Err(format!(
                    "the tensors' checksum is {actual}, the header says {expected}: the weights \
                     were changed after writing"
                ));
            }
        }
        let mut params = Vec::new();
        let mut mean_square = Vec::new();
        let mut first_moment = Vec::new();
        let (mut rmsprop, mut adamw_v) = (false, false);
        let mut names: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, view) in names {
            if view.dtype() != Dtype::F32 {
                return Err(format!(
                    "tensor `{name}` is {:?}, expected F32",
                    view.dtype()
                ));
            }
            if view.data().len() % 4 != 0 {
                return Err(format!(
                    "tensor `{name}` is not a whole number of F32 values"
                ));
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let (kind, short) = name
                .split_once('.')
                .ok_or_else(|| format!("unexpected tensor `{name}`"))?;
            let t = NamedTensor {
                name: short.to_string(),
                dims: view.shape().to_vec(),
                data,
            };
            match kind {
                "param" => params.push(t),
                RMSPROP => {
                    rmsprop = true;
                    mean_square.push(t)
                }
                ADAMW_V => {
                    adamw_v = true;
                    mean_square.push(t)
                }
                ADAMW_M => first_moment.push(t),
                _ => return Err(format!("unexpected tensor `{name}`")),
            }
        }
        let adamw_m = !first_moment.is_empty();
        if (rmsprop && (adamw_v || adamw_m)) || adamw_v != adamw_m {
            return Err(
                "the optimizer state mixes RMSProp's and AdamW's moments, or lacks one of AdamW's two"
                    .into(),
            );
        }
        if params.is_empty() {
            return Err("the checkpoint holds no weights".into());
        }
        let all = params
            .iter()
            .map(|t| ("param", t))
            .chain(mean_square.iter().map(|t| ("optimizer", t)))
            .chain(first_moment.iter().map(|t| ("optimizer", t)));
        for (kind, t) in all {
            if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(format!(
                    "{kind} tensor `{}` holds a non-finite value ({} at index {i}): the run that \
                     wrote it diverged",
                    t.name, t.data[i]
                ));
            }
        }
        check_input_norm(&head.model.input_norm)?;
        let optimizer = head.optimizer_step.map(|step| OptimizerState {
            step,
            mean_square,
            first_moment,
        });
        let verified = head.tensor_crc32.is_some();
        Ok((
            Checkpoint {
                model: head.model,
                params,
                optimizer,
                state: head.state,
                written_by: head.written_by,
            },
            verified,
        ))
    }
}

/// Input normalisation divides by each deviation: every one must be a positive number, every mean
/// finite.
fn check_input_norm(norm: &InputNorm) -> std::result::Result<(), String> {
    if let Some((k, s)) = norm
        .std
        .iter()
        .enumerate()
        .find(|(_, s)| !(s.is_finite() && **s > 0.0))
    {
        return Err(format!(
            "input normalisation `input_norm.std[{k}]` is {s}; expected a positive number"
        ));
    }
    if let Some((k, m)) = norm.mean.iter().enumerate().find(|(_, m)| !m.is_finite()) {
        return Err(format!(
            "input normalisation `input_norm.mean[{k}]` is {m}; expected a finite number"
        ));
    }
    Ok(())
}

fn config_err_tensor(name: &str, e: safetensors::SafeTensorError) -> Error {
    crate::config_err!("tensor `{name}` cannot be stored: {e}")
}

/// JSON of a metadata value (the safetensors metadata map holds strings).
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("checkpoint metadata serialises")
}

#[cfg(test)]
mod tests {
    use super::super::version_string;
    use super::*;
    use crate::data::InputNormMode;

    /// A checkpoint written before the mode existed has no `input_norm_mode`: it reads as
    /// `training`, the only normalisation there was.
    #[test]
    fn model_info_without_a_mode_reads_as_training() {
        let info = ModelInfo {
            arch: "c4k3 p2 fc8".into(),
            input_shape: (1, 8, 8),
            classes: vec!["a".into(), "b".into()],
            input_norm_mode: InputNormMode::Speaker,
            input_norm: InputNorm::identity(1),
            config: serde_json::json!({}),
            side_input_len: 0,
        };
        let mut value = serde_json::to_value(&info).unwrap();
        assert_eq!(value["input_norm_mode"], "speaker");
        let back: ModelInfo = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(back, info);
        value.as_object_mut().unwrap().remove("input_norm_mode");
        let old: ModelInfo = serde_json::from_value(value).unwrap();
        assert_eq!(old.input_norm_mode, InputNormMode::Training);
    }

    fn small_checkpoint() -> Checkpoint {
        let tensor = |name: &str, n: usize| NamedTensor {
            name: name.to_string(),
            dims: vec![n],
            data: (0..n).map(|i| i as f32 * 0.25 - 1.0).collect(),
        };
        Checkpoint {
            model: ModelInfo {
                arch: "c4k3 p2 fc8".into(),
                input_shape: (1, 8, 8),
                classes: vec!["a".into(), "b".into()],
                input_norm_mode: InputNormMode::Training,
                input_norm: InputNorm {
                    mean: vec![0.5],
                    std: vec![2.0],
                },
                config: serde_json::json!({}),
                side_input_len: 0,
            },
            // In name order, as a checkpoint reads back.
            params: vec![tensor("conv1.b", 4), tensor("conv1.w", 36)],
            optimizer: Some(OptimizerState {
                step: 3,
                mean_square: vec![tensor("conv1.b", 4), tensor("conv1.w", 36)],
                first_moment: Vec::new(),
            }),
            state: TrainerState {
                step: 3,
                total_steps: 10,
                batches_per_epoch: 2,
                data_seed: 7,
                best: None,
                interval_loss_sum: 0.5,
                interval_correct: 1,
                interval_samples: 2,
                elapsed_s: 1.5,
                images: 6,
            },
            written_by: version_string(),
        }
    }

    /// The offset of tensor `name`'s first byte in the file `bytes`.
    fn data_offset(bytes: &[u8], name: &str) -> usize {
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
        let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize;
        8 + header_len + start
    }

    #[test]
    fn a_checkpoint_round_trips_with_its_checksum() {
        let ck = small_checkpoint();
        let bytes = ck.to_bytes().unwrap();
        let (back, verified) = Checkpoint::from_bytes(&bytes).unwrap();
        assert!(verified, "a written checkpoint carries a checksum");
        assert_eq!(back, ck);
    }

    /// One flipped bit in a weight is refused (it gave confident nonsense before the checksum).
    #[test]
    fn a_flipped_weight_byte_fails_the_checksum() {
        let mut bytes = small_checkpoint().to_bytes().unwrap();
        let at = data_offset(&bytes, "param.conv1.w") + 5;
        bytes[at] ^= 0x10;
        let err = Checkpoint::from_bytes(&bytes).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
    }

    /// A file without a checksum (older writers) loads, and says it was not verified.
    #[test]
    fn a_checkpoint_without_a_checksum_loads_unverified() {
        let ck = small_checkpoint();
        let bytes = ck.to_bytes().unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut head: serde_json::Value =
            serde_json::from_str(&header.metadata().as_ref().unwrap()[METADATA_KEY]).unwrap();
        head.as_object_mut().unwrap().remove("tensor_crc32");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let old = safetensors::serialize(
            st.tensors(),
            Some(HashMap::from([(
                METADATA_KEY.to_string(),
                head.to_string(),
            )])),
        )
        .unwrap();
        let (back, verified) = Checkpoint::from_bytes(&old).unwrap();
        assert!(!verified);
        assert_eq!(back, ck);
    }

    #[test]
    fn non_finite_tensors_are_refused_by_name() {
        for (what, make) in [
            ("param tensor `conv1.w`", 0usize),
            ("optimizer tensor `conv1.w`", 1),
        ] {
            let mut ck = small_checkpoint();
            match make {
                0 => ck.params[1].data[2] = f32::NAN,
                _ => ck.optimizer.as_mut().unwrap().mean_square[1].data[0] = f32::INFINITY,
            }
            // Written as a diverged run would have (the trainer itself refuses to).
            let bytes = ck.to_bytes().unwrap();
            let err = Checkpoint::from_bytes(&bytes).unwrap_err();
            assert!(err.contains(what) && err.contains("non-finite"), "{err}");
        }
    }

    #[test]
    fn non_positive_normalisation_deviations_are_refused() {
        // (NaN and infinity cannot be written: JSON has neither.)
        for bad in [0.0, -1.0] {
            let mut ck = small_checkpoint();
            ck.model.input_norm.std[0] = bad;
            let err = Checkpoint::from_bytes(&ck.to_bytes().unwrap()).unwrap_err();
            assert!(
                err.contains("input_norm.std[0]") && err.contains("positive"),
                "{bad}: {err}"
            );
        }
    }
}
