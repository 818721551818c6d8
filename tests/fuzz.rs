//! Property-based fuzzing of every reader of untrusted input: WAV files, architecture specs, TOML
//! and JSON configurations, and checkpoint files (header, metadata and tensors). Each must answer
//! any input with a value or an error, never a panic, and allocate in proportion to the input,
//! never what a header claims.
//!
//! Sized for CI (a few seconds per property on two cores; `PROPTEST_CASES` scales every property
//! for longer local runs). Inputs that once broke a reader are kept in `tests/fuzz_corpus/<reader>/`
//! and replayed by [`the_corpus_of_past_crashers_replays_cleanly`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config;
use rescnn::data::{InputNorm, InputNormMode};
use rescnn::model::{ArchSpec, InputShape, NamedTensor, OptimizerState, Plan};
use rescnn::training::checkpoint::{Checkpoint, ModelInfo, TrainerState};
use rescnn::training::TrainConfig;

/// The largest single allocation any fuzzed input may cause. Every input here is under 64 KiB;
/// a reader that sizes a buffer from a header's claim (up to 4 GiB of samples) goes far past it.
const ALLOCATION_LIMIT: usize = 64 << 20;

thread_local! {
    /// The largest allocation this thread requested since [`reset_largest`] (each property runs
    /// its cases on its own thread). Const-initialised without a destructor: reading it from the
    /// allocator allocates nothing.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

fn reset_largest() {
    LARGEST.with(|l| l.set(0));
}

/// The system allocator, recording the largest request. An oversized request is still passed on:
/// a reservation that is never written costs only address space, and the property that caused it
/// then fails by name in [`assert_bounded`] (where the system refuses it, the process aborts with
/// "memory allocation of N bytes failed", a failure too).
struct Watch;

// SAFETY: every call forwards to `System` with the caller's layout and pointer unchanged (the only
// addition is recording the size); `System` upholds GlobalAlloc's contract.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as above; the layout is the caller's, non-zero-sized by GlobalAlloc's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` (through `alloc`/`realloc` here) with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: `ptr` came from `System` with `layout`; the caller guarantees `new_size` is valid.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Watch = Watch;

/// Fail when this thread requested an allocation over the limit since [`reset_largest`].
fn assert_bounded(what: &str) {
    let largest = LARGEST.with(Cell::get);
    assert!(
        largest <= ALLOCATION_LIMIT,
        "{what}: an allocation of {largest} bytes (limit {ALLOCATION_LIMIT})"
    );
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Found failures go into tests/fuzz_corpus by hand, not into files beside the tests.
        failure_persistence: None,
        ..Config::default()
    }
}

// ---- WAV ------------------------------------------------------------------------------------

/// A well-formed WAV file's bytes.
fn wav_bytes(channels: u16, rate: u32, bits: u16, float: bool, frames: usize) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for i in 0..frames * channels as usize {
            if float {
                w.write_sample((i as f32 * 0.01).sin()).unwrap();
            } else {
                let v = ((i as f32 * 0.01).sin() * ((1i64 << (bits - 1)) - 1) as f32) as i32;
                w.write_sample(v).unwrap();
            }
        }
        w.finalize().unwrap();
    }
    out.into_inner()
}

fn decode_wav(bytes: &[u8]) {
    reset_largest();
    if let Ok(audio) = rescnn::audio::decode_wav_bytes(bytes, "fuzz.wav") {
        assert!(
            audio.samples.len() <= bytes.len(),
            "more samples than bytes"
        );
        assert!(audio.sample_rate > 0);
    }
    assert_bounded("WAV decode");
}

/// A valid WAV's format: (channels, rate, bits, float).
fn wav_format() -> impl Strategy<Value = (u16, u32, u16, bool)> {
    (
        1u16..=3,
        prop_oneof![Just(8_000u32), Just(16_000), Just(44_100), 1u32..200_000],
        prop_oneof![
            Just((8u16, false)),
            Just((16, false)),
            Just((24, false)),
            Just((32, false)),
            Just((32, true))
        ],
    )
        .prop_map(|(c, r, (b, f))| (c, r, b, f))
}

proptest! {
    #![proptest_config(config(5000))]

    /// Arbitrary bytes, and arbitrary bytes behind a RIFF/WAVE signature (to get past the first check).
    #[test]
    fn wav_reader_survives_arbitrary_bytes(mut bytes in prop::collection::vec(any::<u8>(), 0..600), riff in any::<bool>()) {
        if riff && bytes.len() >= 12 {
            bytes[..4].copy_from_slice(b"RIFF");
            bytes[8..12].copy_from_slice(b"WAVE");
        }
        decode_wav(&bytes);
    }
}

proptest! {
    #![proptest_config(config(3000))]

    /// Valid files with header fields overwritten (sizes, channels, rate, bits, chunk ids), data
    /// cut short, and the data chunk's size set to anything up to 4 GiB.
    #[test]
    fn wav_reader_survives_damaged_headers(
        (channels, rate, bits, float) in wav_format(),
        frames in 0usize..300,
        edits in prop::collection::vec((0usize..44, any::<u8>()), 0..6),
        data_size in prop::option::of(prop_oneof![Just(u32::MAX), Just(0xFFFF_FFF0), any::<u32>()]),
        keep in prop::option::of(0usize..2000),
    ) {
        let mut bytes = wav_bytes(channels, rate, bits, float, frames);
        if let Some(size) = data_size {
            // hound writes the canonical 44-byte header for PCM (the data size at 40) and a longer
            // WAVE_FORMAT_EXTENSIBLE one otherwise: find the `data` chunk either way.
            if let Some(at) = bytes.windows(4).position(|w| w == b"data") {
                bytes[at + 4..at + 8].copy_from_slice(&size.to_le_bytes());
            }
        }
        for (at, value) in edits {
            if at < bytes.len() {
                bytes[at] = value;
            }
        }
        if let Some(keep) = keep {
            bytes.truncate(keep);
        }
        decode_wav(&bytes);
    }
}

// ---- architecture specs ---------------------------------------------------------------------

/// One token, mostly well-formed with extreme numbers, sometimes garbage.
fn spec_token() -> impl Strategy<Value = String> {
    let n = prop_oneof![0usize..5, 0usize..70, Just(usize::MAX), any::<usize>()];
    prop_oneof![
        (n.clone(), n.clone()).prop_map(|(f, k)| format!("c{f}k{k}")),
        (n.clone(), n.clone(), n.clone()).prop_map(|(f, k, s)| format!("c{f}k{k}s{s}")),
        n.clone().prop_map(|k| format!("p{k}")),
        (n.clone(), n.clone()).prop_map(|(k, s)| format!("p{k}s{s}")),
        n.clone().prop_map(|t| format!("+{t}")),
        n.prop_map(|u| format!("fc{u}")),
        Just("bn".to_string()),
        Just("stats".to_string()),
        any::<f64>().prop_map(|p| format!("drop{p}")),
        "[a-z+0-9.]{0,6}",
    ]
}

proptest! {
    #![proptest_config(config(5000))]

    /// Specs of up to 12 tokens (and arbitrary text), parsed and then planned for a small input.
    #[test]
    fn arch_spec_parser_and_planner_survive_anything(
        tokens in prop::collection::vec(spec_token(), 0..12),
        raw in ".{0,40}",
        (c, h, w) in (1usize..4, 1usize..80, 1usize..80),
        classes in 0usize..10,
    ) {
        for text in [tokens.join(" "), raw] {
            reset_largest();
            if let Ok(spec) = ArchSpec::from_name_or_spec(&text) {
                let _ = Plan::new(&spec, InputShape::new(c, h, w), classes);
            }
            assert_bounded("arch spec");
        }
    }
}

// ---- configurations -------------------------------------------------------------------------

/// A settings key: real ones (nested as TOML tables need) and unknown ones.
fn config_key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "batch",
        "iterations",
        "epochs",
        "eval_every",
        "seed",
        "arch",
        "corpus",
        "protocol",
        "test_fraction",
        "val_fraction",
        "ensemble",
        "prosody_weight",
        "mixup_alpha",
        "label_smoothing",
        "input_norm",
        "eval_time",
        "eval_hop",
        "preset",
        "device",
        "optimizer.lr",
        "optimizer.kind",
        "optimizer.decay",
        "optimizer.weight_decay",
        "optimizer.warmup_fraction",
        "spectrogram.image.height",
        "spectrogram.image.width",
        "spectrogram.image.top_db",
        "spectrogram.image.time_axis",
        "spectrogram.stft.n_fft",
        "spectrogram.stft.sample_rate",
        "spectrogram.stft.window_ms",
        "spectrogram.stft.hop_ms",
        "spectrogram.stft.mel_bands",
        "augment.freq_mask",
        "no_such_key",
        "a.b.c",
    ])
}

/// A TOML value: numbers at the edges (TOML has nan and inf), strings, booleans, tables, arrays.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        prop_oneof![Just(0i64), Just(-1), Just(1), Just(2)].prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        prop::sample::select(vec!["nan", "inf", "-inf", "1e308", "-0.0", "1e-320"])
            .prop_map(String::from),
        "[a-z0-9: ._+-]{0,12}".prop_map(|s| format!("{s:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("[1, \"a\"]".to_string()),
    ]
}

/// The settings as a JSON object (nested by the dotted keys) and the same as a TOML document.
fn settings() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    prop::collection::vec((config_key(), toml_value()), 0..6)
}

fn toml_text(settings: &[(&str, String)]) -> String {
    // Dotted keys are valid TOML; a repeated key makes an invalid document, which is fine too.
    settings
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect()
}

fn check_config_file(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    reset_largest();
    if let Ok(c) = TrainConfig::default().with_file(&path) {
        if c.validate().is_ok() {
            // A valid configuration writes and reads back as itself.
            assert_eq!(toml::from_str::<TrainConfig>(&c.to_toml()).unwrap(), c);
        }
    }
    let _ = TrainConfig::load_toml(&path);
    assert_bounded("configuration");
}

proptest! {
    #![proptest_config(config(1500))]

    /// TOML and JSON configuration files layered over the defaults, validated, written back.
    #[test]
    fn config_files_survive_any_settings(settings in settings(), raw in ".{0,80}") {
        let dir = tempfile::tempdir().unwrap();
        let text = toml_text(&settings);
        check_config_file(dir.path(), "run.toml", &text);
        check_config_file(dir.path(), "raw.toml", &raw);
        check_config_file(dir.path(), "raw.json", &raw);
        if let Ok(value) = toml::from_str::<toml::Value>(&text) {
            if let Ok(json) = serde_json::to_string(&value) {
                check_config_file(dir.path(), "run.json", &json);
            }
        }
    }
}

// ---- checkpoints ----------------------------------------------------------------------------

fn small_checkpoint() -> Checkpoint {
    let tensor = |name: &str, dims: Vec<usize>| NamedTensor {
        name: name.to_string(),
        data: (0..dims.iter().product::<usize>())
            .map(|i| i as f32 * 0.5)
            .collect(),
        dims,
    };
    Checkpoint {
        model: ModelInfo {
            arch: "c4k3 p2 fc8".into(),
            input_shape: (1, 8, 8),
            classes: vec!["a".into(), "b".into()],
            input_norm_mode: InputNormMode::Training,
            input_norm: InputNorm {
                mean: vec![0.1],
                std: vec![1.5],
            },
            config: serde_json::json!({"batch": 4}),
            side_input_len: 0,
        },
        params: vec![tensor("c.b", vec![4]), tensor("c.w", vec![4, 1, 3, 3])],
        optimizer: Some(OptimizerState {
            step: 2,
            mean_square: vec![tensor("c.b", vec![4]), tensor("c.w", vec![4, 1, 3, 3])],
            first_moment: Vec::new(),
        }),
        state: TrainerState {
            step: 2,
            total_steps: 4,
            batches_per_epoch: 2,
            data_seed: 1,
            best: None,
            interval_loss_sum: 0.0,
            interval_correct: 0,
            interval_samples: 0,
            elapsed_s: 0.0,
            images: 8,
        },
        written_by: "fuzz".into(),
    }
}

fn read_checkpoint(bytes: &[u8]) {
    reset_largest();
    if let Ok((ck, _)) = Checkpoint::from_bytes(bytes) {
        for t in ck
            .params
            .iter()
            .chain(ck.optimizer.iter().flat_map(|o| &o.mean_square))
        {
            assert!(
                t.data.iter().all(|v| v.is_finite()),
                "a non-finite tensor loaded"
            );
        }
    }
    assert_bounded("checkpoint");
}

proptest! {
    #![proptest_config(config(3000))]

    /// Arbitrary bytes, and a valid checkpoint with bytes overwritten (header length, JSON header,
    /// metadata, tensor data), cut short or extended.
    #[test]
    fn checkpoint_reader_survives_damage(
        raw in prop::collection::vec(any::<u8>(), 0..200),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        length in prop::option::of(prop_oneof![Just(u64::MAX), Just(1u64 << 40), any::<u64>(), 0u64..3000]),
        keep in prop::option::of(any::<prop::sample::Index>()),
        tail in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        read_checkpoint(&raw);
        let mut bytes = small_checkpoint().to_bytes().unwrap();
        if let Some(n) = length {
            bytes[..8].copy_from_slice(&n.to_le_bytes());
        }
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if let Some(k) = keep {
            let n = k.index(bytes.len());
            bytes.truncate(n);
        }
        bytes.extend_from_slice(&tail);
        read_checkpoint(&bytes);
    }

    /// Metadata JSON with its values replaced: the reader refuses or reads, never panics.
    #[test]
    fn checkpoint_metadata_survives_any_json(
        path in prop::sample::select(vec!["format", "model", "state", "optimizer_step", "tensor_crc32",
            "model.input_norm", "model.input_norm.std", "model.input_shape", "model.classes",
            "state.step", "state.batches_per_epoch", "written_by"]),
        value in prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,10}".prop_map(serde_json::Value::from),
            Just(serde_json::json!([])),
            Just(serde_json::json!([0.0, -1.0])),
            Just(serde_json::json!({})),
        ],
    ) {
        let bytes = small_checkpoint().to_bytes().unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut head: serde_json::Value =
            serde_json::from_str(&meta.metadata().as_ref().unwrap()["rescnn"]).unwrap();
        let mut at = &mut head;
        let keys: Vec<&str> = path.split('.').collect();
        for k in &keys[..keys.len() - 1] {
            at = &mut at[*k];
        }
        at[keys[keys.len() - 1]] = value;
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let damaged = safetensors::serialize(
            st.tensors(),
            Some(HashMap::from([("rescnn".to_string(), head.to_string())])),
        )
        .unwrap();
        read_checkpoint(&damaged);
    }
}

// ---- the corpus of past crashers ------------------------------------------------------------

/// Every file under `tests/fuzz_corpus/<reader>/` through its reader: no panic, bounded
/// allocation, and the outcome its name promises (`ok-*` reads, anything else is refused).
#[test]
fn the_corpus_of_past_crashers_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let mut replayed = 0;
    for reader in ["wav", "spec", "config", "checkpoint"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(reader))
            .unwrap_or_else(|e| panic!("{reader}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&f).unwrap();
            reset_largest();
            let ok = match reader {
                "wav" => rescnn::audio::decode_wav_bytes(&bytes, &f)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                "spec" => {
                    let text = String::from_utf8_lossy(&bytes);
                    ArchSpec::from_name_or_spec(text.trim_end())
                        .and_then(|s| Plan::new(&s, InputShape::new(1, 32, 32), 7).map(|_| ()))
                        .map_err(|e| e.to_string())
                }
                "config" => TrainConfig::default()
                    .with_file(&f)
                    .and_then(|c| c.validate())
                    .map_err(|e| e.to_string()),
                _ => Checkpoint::from_bytes(&bytes).map(|_| ()),
            };
            assert_bounded(&name);
            assert_eq!(
                ok.is_ok(),
                name.starts_with("ok-"),
                "{reader}/{name}: {ok:?}"
            );
            replayed += 1;
        }
    }
    assert!(replayed >= 12, "only {replayed} corpus files");
}
