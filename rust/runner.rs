//! Loading an NNEF model into tract in-process and running it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tract_nnef::prelude::*;
use tract_pulse::WithPulse;
use tract_transformers::WithTractTransformers;

use crate::archive::{scan_archive, scan_folder};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// A dense tensor owned as bytes (inputs given to, and outputs taken from, tract).
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major little-endian bytes (booleans one byte each).
    pub bytes: Vec<u8>,
}

/// Which operator registries tract resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registries {
    /// `tract_core` extension operators.
    pub tract_core: bool,
    /// `tract_transformers` operators (rms_norm, sdpa, apply_rope, ...).
    pub tract_transformers: bool,
    /// `tract_pulse` operators (streaming delays).
    pub tract_pulse: bool,
}

impl Registries {
    /// Every registry this package links.
    pub const ALL: Registries = Registries {
        tract_core: true,
        tract_transformers: true,
        tract_pulse: true,
    };
    /// Only the operators of the NNEF specification.
    pub const STANDARD: Registries = Registries {
        tract_core: false,
        tract_transformers: false,
        tract_pulse: false,
    };
}

/// Where a model comes from.
pub enum ModelSource<'a> {
    /// A folder, a `.tar` or a `.tgz` on disk.
    Path(&'a Path),
    /// The bytes of a `.tar` or `.tgz`.
    Bytes(&'a [u8]),
}

/// Name, dtype and shape of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoFact {
    /// Node name in the NNEF graph.
    pub name: String,
    /// Datum type as tract prints it (`F32`, `I64`, ...).
    pub dtype: String,
    /// Shape with symbols (`1,S,80`).
    pub shape: String,
}

/// A model loaded into tract, ready to run.
pub struct TractModel {
    plan: Arc<TypedSimplePlan>,
    inputs: Vec<IoFact>,
    outputs: Vec<IoFact>,
    properties: Vec<(String, String)>,
}

/// Inputs are named after their source node (an outlet's label may be an output's name when the
/// graph passes an input straight through); outputs after their outlet label.
fn facts(model: &TypedModel, outlets: &[OutletId], by_label: bool) -> Result<Vec<IoFact>> {
    outlets
        .iter()
        .map(|o| {
            let fact = model.outlet_fact(*o).map_err(Error::tract)?;
            let label = if by_label {
                model.outlet_label(*o)
            } else {
                None
            };
            Ok(IoFact {
                name: label
                    .map(str::to_string)
                    .unwrap_or_else(|| model.node(o.node).name.clone()),
                dtype: format!("{:?}", fact.datum_type),
                shape: fact
                    .shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            })
        })
        .collect()
}

impl TractModel {
    /// Loads a model, binds `symbols` (e.g. `S = 100`), optimizes it (when `optimize`) and
    /// prepares it to run. Archive members and folder entries are checked to stay inside
    /// the model before tract reads them.
    pub fn load(
        source: ModelSource,
        registries: Registries,
        symbols: &[(String, i64)],
        optimize: bool,
    ) -> Result<TractModel> {
        unpanicked("loading the model", || {
            Self::load_unguarded(source, registries, symbols, optimize)
        })
    }

    fn load_unguarded(
        source: ModelSource,
        registries: Registries,
        symbols: &[(String, i64)],
        optimize: bool,
    ) -> Result<TractModel> {
        let mut nnef = tract_nnef::nnef();
        if !registries.tract_core {
            nnef = nnef.without_tract_core();
        }
        if registries.tract_transformers {
            nnef = nnef.with_tract_transformers();
        }
        if registries.tract_pulse {
            nnef = nnef.with_pulse();
        }
        let model = match source {
            ModelSource::Path(p) => {
                if !p.exists() {
                    return Err(Error::io(p, std::io::ErrorKind::NotFound.into()));
                }
                if p.is_dir() {
                    scan_folder(p)?;
                    nnef.model_for_path(p)
                } else {
                    // The safety scan runs beside tract's own read, on another core: the
                    // archive is decompressed twice but the wall time is that of one read.
                    let what = p.display().to_string();
                    let (model, scanned) = std::thread::scope(|s| {
                        let scan = s.spawn(|| -> Result<()> {
                            let f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
                            scan_archive(&what, std::io::BufReader::new(f)).map(|_| ())
                        });
                        let model = nnef.model_for_path(p);
                        (model, scan.join().expect("archive scan thread panicked"))
                    });
                    scanned?;
                    model
                }
            }
            ModelSource::Bytes(b) => {
                let (model, scanned) = std::thread::scope(|s| {
                    let scan = s.spawn(|| scan_archive("model bytes", b).map(|_| ()));
                    let mut reader: &[u8] = b;
                    let model = nnef.model_for_read(&mut reader);
                    (model, scan.join().expect("archive scan thread panicked"))
                });
                scanned?;
                model
            }
        }
        .map_err(Error::tract)?;
        let model = bind_symbols(model, symbols)?;
        // Names as the document gives them: optimization may rename the nodes it fuses.
        let inputs = facts(&model, model.input_outlets().map_err(Error::tract)?, false)?;
        let outputs = facts(&model, model.output_outlets().map_err(Error::tract)?, true)?;
        let mut properties: Vec<(String, String)> = model
            .properties
            .iter()
            .map(|(k, v)| {
                let text = v
                    .try_as_plain_ram()
                    .and_then(|p| p.to_scalar::<String>().cloned())
                    .unwrap_or_else(|_| format!("{v:?}"));
                (k.clone(), text)
            })
            .collect();
        properties.sort();
        let model = if optimize {
            model.into_optimized()
        } else {
            model.into_decluttered()
        }
        .map_err(Error::tract)?;
        let plan = model.into_runnable().map_err(Error::tract)?;
        Ok(TractModel {
            plan,
            inputs,
            outputs,
            properties,
        })
    }

    /// The model inputs, in order.
    pub fn inputs(&self) -> &[IoFact] {
        &self.inputs
    }

    /// The model's `tract_core_properties`, as text, sorted by key.
    pub fn properties(&self) -> &[(String, String)] {
        &self.properties
    }

    /// The model outputs, in order.
    pub fn outputs(&self) -> &[IoFact] {
        &self.outputs
    }

    /// Runs the model on `inputs` (in input order).
    pub fn run(&self, inputs: Vec<RawTensor>) -> Result<Vec<RawTensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::InvalidArgument(format!(
                "the model takes {} inputs ({}), {} were given",
                self.inputs.len(),
                self.inputs
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                inputs.len()
            )));
        }
        let values = inputs
            .into_iter()
            .map(|t| to_tract(t).map(|t| t.into_tvalue()))
            .collect::<Result<TVec<_>>>()?;
        let outputs = unpanicked("running the model", || {
            self.plan.run(values).map_err(Error::tract)
        })?;
        outputs.into_iter().map(|t| from_tract(&t)).collect()
    }
}

/// Runs `f`, turning a panic inside tract into an error: some of tract's kernels index without
/// checking (a gather index past the end of its table panics), and a panic must not reach the
/// caller as anything but a clear error.
fn unpanicked<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        Err(Error::Tract(format!(
            "tract stopped with an internal error while {what}: {message} (an index out of \
             range, such as a gather past the end of its table, can cause this)"
        )))
    })
}

fn bind_symbols(model: TypedModel, symbols: &[(String, i64)]) -> Result<TypedModel> {
    if symbols.is_empty() {
        return Ok(model);
    }
    let mut subs = HashMap::new();
    for (name, value) in symbols {
        let Some(sym) = model.symbols.get(name) else {
            let known: Vec<String> = model
                .symbols
                .all_symbols()
                .iter()
                .map(|s| s.to_string())
                .collect();
            return Err(Error::InvalidArgument(format!(
                "symbol {name:?} is not declared by the model (declared: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        subs.insert(sym, TDim::Val(*value));
    }
    model.set_symbols(&subs).map_err(Error::tract)
}

fn to_tract(t: RawTensor) -> Result<Tensor> {
    let mut bytes = t.bytes;
    if t.dtype == DType::Bool {
        // Any non-zero byte is true; tract's bool must be 0 or 1.
        bytes.iter_mut().for_each(|b| *b = (*b != 0) as u8);
    }
    // SAFETY: every dtype we accept is a plain `Copy` type for which any byte pattern is valid
    // (booleans were normalised to 0/1 above); `from_raw_dt` checks the length against the shape.
    unsafe { Tensor::from_raw_dt(t.dtype.to_tract(), &t.shape, &bytes) }.map_err(Error::tract)
}

fn from_tract(t: &Tensor) -> Result<RawTensor> {
    let dtype = DType::from_tract(t.datum_type()).ok_or_else(|| {
        Error::Tract(format!(
            "output of type {:?} cannot be returned",
            t.datum_type()
        ))
    })?;
    let plain = t.try_as_plain_ram().map_err(Error::tract)?;
    Ok(RawTensor {
        dtype,
        shape: t.shape().to_vec(),
        bytes: plain.as_bytes().to_vec(),
    })
}

/// Reads a `.dat` file with tract's own reader (tract-nnef), as a dense tensor, dequantizing
/// Q4_0 blocks to f32. Used to prove that what we write is what tract reads.
pub fn tract_read_dat(path: &Path) -> Result<RawTensor> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let t = tract_nnef::tensors::read_tensor(std::io::BufReader::new(f)).map_err(Error::tract)?;
    if let Some(bqs) = t.storage_as::<tract_linalg::block_quant::BlockQuantStorage>() {
        let values = bqs
            .format()
            .dequant_f32(bqs.value())
            .map_err(Error::tract)?;
        let values = values.into_shape(t.shape()).map_err(Error::tract)?;
        return from_tract(&values);
    }
    from_tract(&t)
}
