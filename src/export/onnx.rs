//! The subset of ONNX's `onnx.proto` (IR version 8) that a rescnn model needs, declared by hand as
//! `prost` messages: no `protoc` at build time and no generated code in the tree. Field numbers and
//! types follow `onnx/onnx.proto` exactly; messages and fields rescnn never writes are left out
//! (protobuf readers skip nothing they were not sent, so a subset encodes a valid model).
//!
//! The helpers below build nodes, attributes and tensors with the right `type`/`data_type` tags, so
//! the graph builder ([`super::graph`]) never spells a wire-format constant.

use prost::Message;

/// The IR version written (ONNX 1.13+ readers; ONNX Runtime ≥ 1.14).
pub const IR_VERSION: i64 = 8;
/// The default-domain opset the graph is written against. Every op used has had its current
/// semantics since at least this version (Softmax over one axis since 13, ReduceMean with an
/// `axes` attribute up to 17).
pub const OPSET: i64 = 17;

/// `TensorProto.DataType`.
pub mod data_type {
    pub const FLOAT: i32 = 1;
    pub const INT64: i32 = 7;
}

/// `AttributeProto.AttributeType`.
mod attribute_type {
    pub const FLOAT: i32 = 1;
    pub const INT: i32 = 2;
    pub const INTS: i32 = 7;
}

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(string, tag = "10")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(string, tag = "7")]
    pub domain: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(string, tag = "8")]
    pub name: String,
    /// Little-endian values, row-major.
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    /// `oneof value { Tensor tensor_type = 1; ... }`: only tensors here.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

/// `TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`: `oneof value { int64 dim_value = 1; string dim_param = 2; }`.
#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(oneof = "DimensionValue", tags = "1, 2")]
    pub value: Option<DimensionValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum DimensionValue {
    #[prost(int64, tag = "1")]
    DimValue(i64),
    #[prost(string, tag = "2")]
    DimParam(String),
}

impl ModelProto {
    /// The protobuf bytes of the model (what a `.onnx` file holds).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
    /// Decode `.onnx` bytes (of the subset above; unknown fields are skipped).
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, prost::DecodeError> {
        ModelProto::decode(bytes)
    }
}

/// A graph node `op_type(inputs) -> outputs`.
pub fn node(
    op_type: &str,
    name: impl Into<String>,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op_type.into(),
        attribute,
        ..NodeProto::default()
    }
}

pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: value,
        r#type: attribute_type::INT,
        ..AttributeProto::default()
    }
}

pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: values.to_vec(),
        r#type: attribute_type::INTS,
        ..AttributeProto::default()
    }
}

pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: value,
        r#type: attribute_type::FLOAT,
        ..AttributeProto::default()
    }
}

fn dims_i64(dims: &[usize]) -> Vec<i64> {
    dims.iter().map(|&d| d as i64).collect()
}

/// An f32 initializer of `dims` (row-major `values`).
pub fn tensor_f32(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), values.len(), "{name}");
    TensorProto {
        dims: dims_i64(dims),
        data_type: data_type::FLOAT,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// An int64 initializer of `dims`.
pub fn tensor_i64(name: &str, dims: &[usize], values: &[i64]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), values.len(), "{name}");
    TensorProto {
        dims: dims_i64(dims),
        data_type: data_type::INT64,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// One dimension of a value's shape: a fixed size or a named symbolic one (e.g. the batch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    Named(&'static str),
}

/// A float tensor graph input or output with its shape.
pub fn value_info(name: &str, dims: &[Dim], doc: &str) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(v) => DimensionValue::DimValue(*v as i64),
                Dim::Named(s) => DimensionValue::DimParam(s.to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: doc.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked wire bytes: the field numbers and wire types are what `onnx.proto` declares,
    /// which ONNX Runtime's own parser then relies on (tests/onnx_export.rs runs it).
    #[test]
    fn wire_format_of_small_messages() {
        // OperatorSetIdProto { domain: "", version: 17 }: field 2 varint 17 → 0x10 0x11.
        let op = OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        };
        assert_eq!(op.encode_to_vec(), vec![0x10, 0x11]);
        // attr_int("axis", 1): name (1, len) "axis", i (3, varint) 1, type (20, varint) 2.
        let a = attr_int("axis", 1).encode_to_vec();
        assert_eq!(
            a,
            vec![0x0a, 4, b'a', b'x', b'i', b's', 0x18, 1, 0xa0, 0x01, 2]
        );
        // A float tensor keeps its values little-endian in raw_data (field 9).
        let t = tensor_f32("w", &[2], &[1.0, -2.0]);
        let back = TensorProto::decode(t.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.dims, vec![2]);
        assert_eq!(back.data_type, data_type::FLOAT);
        assert_eq!(
            back.raw_data,
            [1f32.to_le_bytes(), (-2f32).to_le_bytes()].concat()
        );
        // A symbolic dimension is dim_param (field 2, length-delimited) inside Dimension.
        let d = Dimension {
            value: Some(DimensionValue::DimParam("N".into())),
        };
        assert_eq!(d.encode_to_vec(), vec![0x12, 1, b'N']);
    }
}
