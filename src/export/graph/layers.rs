//! One planned layer as ONNX nodes (the table in the module above says which).

use super::onnx::{attr_float, attr_int, attr_ints, node, tensor_f32, tensor_i64};
use super::{conv_pads, tensor_prefix, Builder};
use crate::model::{PlannedLayer, PlannedOp};
use crate::{config_err, Result};

impl Builder<'_> {
    /// Emit `layer`: its nodes read the ONNX tensors `current` names for its inputs and leave its
    /// output's name there; `flattened` tracks which nodes are 2-D already.
    pub(super) fn layer(
        &mut self,
        layer: &PlannedLayer,
        current: &mut [String],
        flattened: &mut [bool],
    ) -> Result<()> {
        let b = self;
        let p = tensor_prefix(&layer.name);
        match layer.op {
            PlannedOp::Conv {
                geom,
                input,
                output,
            } => {
                let (w, bias) = b.weights(layer, &p)?;
                let [top, left, bottom, right] = conv_pads(&geom);
                let conv_out = format!("{p}.conv");
                b.push(node(
                    "Conv",
                    &p,
                    &[&current[input], &w, &bias],
                    &[&conv_out],
                    vec![
                        attr_ints("kernel_shape", &[geom.k_h as i64, geom.k_w as i64]),
                        attr_ints("strides", &[geom.stride as i64, geom.stride as i64]),
                        attr_ints(
                            "pads",
                            &[top as i64, left as i64, bottom as i64, right as i64],
                        ),
                        attr_ints("dilations", &[1, 1]),
                        attr_int("group", 1),
                    ],
                ));
                current[output] = b.relu_if(&p, conv_out, geom.relu != 0);
            }
            PlannedOp::Pool {
                geom,
                input,
                output,
            } => {
                let out = format!("{p}.out");
                b.push(node(
                    "MaxPool",
                    &p,
                    &[&current[input]],
                    &[&out],
                    vec![
                        attr_ints("kernel_shape", &[geom.k as i64, geom.k as i64]),
                        attr_ints("strides", &[geom.stride as i64, geom.stride as i64]),
                        attr_ints("pads", &[0, 0, 0, 0]),
                        attr_int("ceil_mode", 0),
                    ],
                ));
                current[output] = out;
            }
            PlannedOp::Shortcut {
                geom,
                source,
                target,
                ..
            } => {
                let mut src = current[source].clone();
                if geom.ratio > 1 {
                    let r = geom.ratio as i64;
                    let out = format!("{p}.mean");
                    b.push(node(
                        "AveragePool",
                        format!("{p}.mean"),
                        &[&src],
                        &[&out],
                        vec![
                            attr_ints("kernel_shape", &[r, r]),
                            attr_ints("strides", &[r, r]),
                            attr_ints("pads", &[0, 0, 0, 0]),
                            attr_int("ceil_mode", 0),
                        ],
                    ));
                    src = out;
                }
                if geom.c_src != geom.c_dst {
                    let indices: Vec<i64> = (0..geom.c_dst as i64)
                        .map(|c| c % geom.c_src as i64)
                        .collect();
                    let idx = format!("{p}.channels");
                    b.initializers
                        .push(tensor_i64(&idx, &[indices.len()], &indices));
                    let out = format!("{p}.tiled");
                    b.push(node(
                        "Gather",
                        format!("{p}.tile"),
                        &[&src, &idx],
                        &[&out],
                        vec![attr_int("axis", 1)],
                    ));
                    src = out;
                }
                let out = format!("{p}.sum");
                b.push(node(
                    "Add",
                    format!("{p}.add"),
                    &[&current[target], &src],
                    &[&out],
                    vec![],
                ));
                current[target] = out;
            }
            PlannedOp::BatchNorm {
                geom,
                input,
                output,
            } => {
                // Explicit BatchNormalization in inference mode with the running statistics (as
                // the CPU reference evaluates), then the ReLU the convolution left to it.
                let mut wanted = layer.params();
                wanted.extend(layer.state());
                let names = b.tensors(layer, &p, wanted)?;
                let [gamma, beta, mean, var]: [String; 4] = names.try_into().map_err(|_| {
                    config_err!(
                        "cannot export layer `{}`: expected γ, β, running mean and variance",
                        layer.name
                    )
                })?;
                let bn_out = format!("{p}.bn");
                b.push(node(
                    "BatchNormalization",
                    &p,
                    &[&current[input], &gamma, &beta, &mean, &var],
                    &[&bn_out],
                    vec![
                        attr_float("epsilon", geom.eps),
                        attr_int("training_mode", 0),
                    ],
                ));
                current[output] = b.relu_if(&p, bn_out, geom.relu != 0);
            }
            PlannedOp::StatsPool {
                geom,
                input,
                output,
            } => {
                // Column means over H, then their mean and sqrt(population variance + eps) over W,
                // concatenated as [means (C), stds (C)].
                let x = current[input].clone();
                let (cols, mean3, dev, sq, var, var_eps, std, mean) = (
                    format!("{p}.columns"),
                    format!("{p}.mean3"),
                    format!("{p}.dev"),
                    format!("{p}.sq"),
                    format!("{p}.var"),
                    format!("{p}.var_eps"),
                    format!("{p}.std"),
                    format!("{p}.mean"),
                );
                let eps = format!("{p}.eps");
                b.initializers.push(tensor_f32(&eps, &[], &[geom.eps]));
                b.push(node(
                    "ReduceMean",
                    format!("{p}.over_h"),
                    &[&x],
                    &[&cols],
                    vec![attr_ints("axes", &[2]), attr_int("keepdims", 0)],
                ));
                b.push(node(
                    "ReduceMean",
                    format!("{p}.over_w"),
                    &[&cols],
                    &[&mean3],
                    vec![attr_ints("axes", &[2]), attr_int("keepdims", 1)],
                ));
                b.push(node(
                    "Sub",
                    format!("{p}.centre"),
                    &[&cols, &mean3],
                    &[&dev],
                    vec![],
                ));
                b.push(node(
                    "Mul",
                    format!("{p}.square"),
                    &[&dev, &dev],
                    &[&sq],
                    vec![],
                ));
                b.push(node(
                    "ReduceMean",
                    format!("{p}.variance"),
                    &[&sq],
                    &[&var],
                    vec![attr_ints("axes", &[2]), attr_int("keepdims", 0)],
                ));
                b.push(node(
                    "Add",
                    format!("{p}.add_eps"),
                    &[&var, &eps],
                    &[&var_eps],
                    vec![],
                ));
                b.push(node(
                    "Sqrt",
                    format!("{p}.sqrt"),
                    &[&var_eps],
                    &[&std],
                    vec![],
                ));
                b.push(node(
                    "Flatten",
                    format!("{p}.mean_2d"),
                    &[&mean3],
                    &[&mean],
                    vec![attr_int("axis", 1)],
                ));
                let out = format!("{p}.out");
                b.push(node(
                    "Concat",
                    format!("{p}.concat"),
                    &[&mean, &std],
                    &[&out],
                    vec![attr_int("axis", 1)],
                ));
                current[output] = out;
                flattened[output] = true;
            }
            PlannedOp::Dropout { input, output, .. } => {
                // The identity at inference.
                current[output] = current[input].clone();
                flattened[output] = flattened[input];
            }
            PlannedOp::Concat {
                input,
                side,
                output,
                ..
            } => {
                let x = b.flat(&p, &current[input], flattened[input]);
                let out = format!("{p}.out");
                b.push(node(
                    "Concat",
                    format!("{p}.concat"),
                    &[&x, &current[side]],
                    &[&out],
                    vec![attr_int("axis", 1)],
                ));
                current[output] = out;
                flattened[output] = true;
            }
            PlannedOp::Dense {
                geom,
                input,
                output,
            } => {
                let (w, bias) = b.weights(layer, &p)?;
                let x = b.flat(&p, &current[input], flattened[input]);
                let gemm_out = format!("{p}.gemm");
                b.push(node(
                    "Gemm",
                    &p,
                    &[&x, &w, &bias],
                    &[&gemm_out],
                    vec![attr_int("transB", 1)],
                ));
                current[output] = b.relu_if(&p, gemm_out, geom.relu != 0);
                flattened[output] = true;
            }
        }
        Ok(())
    }

    /// `x` as (N, features): itself when it is 2-D already, else a `Flatten` named after `p`.
    fn flat(&mut self, p: &str, x: &str, flattened: bool) -> String {
        if flattened {
            return x.to_string();
        }
        let flat = format!("{p}.flat");
        self.push(node(
            "Flatten",
            format!("{p}.flatten"),
            &[x],
            &[&flat],
            vec![attr_int("axis", 1)],
        ));
        flat
    }

    /// `x` through a `Relu` named after `p` when `relu`, else `x` itself.
    fn relu_if(&mut self, p: &str, x: String, relu: bool) -> String {
        if !relu {
            return x;
        }
        let out = format!("{p}.relu");
        self.push(node("Relu", format!("{p}.relu"), &[&x], &[&out], vec![]));
        out
    }
}
