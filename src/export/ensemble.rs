//! An `--ensemble K` fold as one ONNX graph: every member's graph ([`super::export_model`]) with its
//! nodes and tensors renamed `m<k>.…`, all reading the same graph inputs, and each graph output the
//! `Mean` of the members' — what `rescnn eval` and `predict` compute with the fold.

use std::collections::HashSet;

use super::onnx::{node, ModelProto, StringStringEntryProto};
use super::{export_model, keys};
use crate::inference::ensemble::Ensemble;
use crate::{config_err, Result};

/// The ONNX model of `ensemble`: a plain model's graph for one member, the members' graphs side by
/// side with their outputs averaged for several.
pub fn export_ensemble(ensemble: &Ensemble) -> Result<ModelProto> {
    let mut protos = ensemble
        .members
        .iter()
        .map(export_model)
        .collect::<Result<Vec<_>>>()?;
    if protos.len() == 1 {
        return Ok(protos.pop().expect("one member"));
    }
    let members = protos.len();
    let mut merged = protos[0].clone();
    let graph = merged.graph.as_mut().expect("export builds a graph");
    graph.node.clear();
    graph.initializer.clear();
    let (inputs, outputs) = (graph.input.clone(), graph.output.clone());
    let shared: HashSet<&str> = inputs.iter().map(|v| v.name.as_str()).collect();
    for (k, proto) in protos.into_iter().enumerate() {
        let member = proto.graph.expect("export builds a graph");
        if member.input != inputs || member.output != outputs {
            return Err(config_err!(
                "{}: its graph's inputs or outputs differ from the first member's",
                ensemble.members[k].path.display()
            ));
        }
        // An empty name is an omitted optional input, and the graph inputs are everyone's.
        let rename = |name: &String| {
            if name.is_empty() || shared.contains(name.as_str()) {
                name.clone()
            } else {
                format!("m{k}.{name}")
            }
        };
        for mut n in member.node {
            n.input = n.input.iter().map(rename).collect();
            n.output = n.output.iter().map(rename).collect();
            n.name = format!("m{k}.{}", n.name);
            graph.node.push(n);
        }
        for mut t in member.initializer {
            t.name = rename(&t.name);
            graph.initializer.push(t);
        }
    }
    for output in &outputs {
        let each: Vec<String> = (0..members)
            .map(|k| format!("m{k}.{}", output.name))
            .collect();
        let each: Vec<&str> = each.iter().map(String::as_str).collect();
        graph.node.push(node(
            "Mean",
            format!("ensemble.{}", output.name),
            &each,
            &[output.name.as_str()],
            Vec::new(),
        ));
    }
    let folders: Vec<String> = ensemble
        .members
        .iter()
        .map(|m| m.path.display().to_string())
        .collect();
    merged.metadata_props.push(StringStringEntryProto {
        key: keys::ENSEMBLE.to_string(),
        value: serde_json::json!({
            "members": members,
            "checkpoints": folders,
            "combined": "every output is the Mean of the members' outputs (nodes m<k>.*), as rescnn \
                         eval and predict average an ensemble's class probabilities",
        })
        .to_string(),
    });
    merged.doc_string = format!(
        "rescnn ensemble of {members} networks from {}",
        ensemble.path.display()
    );
    Ok(merged)
}
