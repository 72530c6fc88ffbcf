//! The only module that knows Python: converts numpy arrays to core views, releases the GIL
//! around all O(n) work, and maps core errors to the package's exception classes.

use std::path::PathBuf;

use half::f16;
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::archive::{self, ArchiveKind, ModelFiles};
use crate::compare::{self as cmp, Tolerance};
use crate::dat::{self, DatContent, DatHeader, DatOptions, DatSource};
use crate::dtype::{DType, Flavor};
use crate::error::Error;
use crate::q40tensor::{self, Q40Ref, Q40Tensor as CoreQ40Tensor};
use crate::q4_0::{self, Q40Input, Q40Layout};
use crate::runner::{ModelSource, RawTensor, Registries, TractModel as CoreModel};
use crate::stream::{ArchiveStream, RegionValues};
use crate::view::TensorView;

/// Raises the package exception class matching a core error.
fn to_pyerr(err: Error) -> PyErr {
    let class = match &err {
        Error::UnsupportedDtype { .. } => "DTypeError",
        Error::TooLarge { .. } => "TensorTooLargeError",
        Error::Shape { .. } => "ShapeError",
        Error::Format { .. } => "FormatError",
        Error::UnsafePath { .. } => "UnsafePathError",
        Error::DuplicateLabel { .. } => "NameClashError",
        Error::OutputExists { .. } => "OutputExistsError",
        Error::MissingParent { .. } => "MissingFolderError",
        Error::Io { .. } => "NNEFIOError",
        Error::NotQ40Values { .. } => "QTensorError",
        Error::InvalidArgument(_) => "InvalidArgumentError",
        Error::Tract(_) => "TractError",
    };
    let message = err.to_string();
    Python::attach(|py| {
        let made = py
            .import("torch_to_nnef.errors")
            .and_then(|m| m.getattr(class))
            .and_then(|c| c.call1((message.clone(),)));
        match made {
            Ok(exc) => PyErr::from_value(exc),
            Err(e) => e,
        }
    })
}

trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, Error> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_pyerr)
    }
}

fn numpy_dtype(arr: &Bound<'_, PyUntypedArray>, what: &str) -> PyResult<DType> {
    let d = arr.dtype();
    let (kind, size) = (d.kind(), d.itemsize());
    let dtype = match (kind, size) {
        (b'f', 2) => Some(DType::F16),
        (b'f', 4) => Some(DType::F32),
        (b'f', 8) => Some(DType::F64),
        (b'i', 1) => Some(DType::I8),
        (b'i', 2) => Some(DType::I16),
        (b'i', 4) => Some(DType::I32),
        (b'i', 8) => Some(DType::I64),
        (b'u', 1) => Some(DType::U8),
        (b'u', 2) => Some(DType::U16),
        (b'u', 4) => Some(DType::U32),
        (b'u', 8) => Some(DType::U64),
        (b'b', 1) => Some(DType::Bool),
        _ => None,
    };
    let name: String = d.str().map(|s| s.to_string()).unwrap_or_default();
    let Some(dtype) = dtype else {
        return Err(to_pyerr(Error::UnsupportedDtype {
            what: what.to_string(),
            dtype: name,
            hint: "NNEF stores f16, f32, f64, i8..i64, u8..u64 and bool: cast the tensor first"
                .into(),
        }));
    };
    if d.byteorder() == b'>' && size > 1 {
        return Err(to_pyerr(Error::UnsupportedDtype {
            what: what.to_string(),
            dtype: name,
            hint: "big-endian data: convert with arr.astype(arr.dtype.newbyteorder('<'))".into(),
        }));
    }
    Ok(dtype)
}

/// A borrowed view of a numpy array. The array must stay referenced (it is, by the caller's
/// `Bound`) while the view is used.
fn view_of<'a>(arr: &'a Bound<'_, PyUntypedArray>, what: &str) -> PyResult<TensorView<'a>> {
    let dtype = numpy_dtype(arr, what)?;
    let shape = arr.shape().to_vec();
    // SAFETY: `as_array_ptr` points at a live PyArrayObject kept alive by `arr`.
    let data = unsafe { (*arr.as_array_ptr()).fields.data } as *const u8;
    if arr.is_c_contiguous() {
        let len = shape.iter().product::<usize>() * dtype.size_of();
        let bytes: &'a [u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: a C-contiguous array owns `len` readable bytes at `data`, alive as long
            // as `arr`; numpy refuses to resize an array that other references point to.
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        TensorView::contiguous(dtype, &shape, bytes)
            .map_err(|e| to_pyerr(Error::InvalidArgument(e)))
    } else {
        let strides = arr.strides().to_vec();
        // SAFETY: numpy guarantees every index within `shape` addressed through `strides`
        // from `data` is inside the array's buffer, kept alive by `arr`.
        Ok(unsafe { TensorView::strided(dtype, &shape, data, &strides) })
    }
}

fn as_array<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    obj.cast::<PyUntypedArray>().cloned().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what}: expected a numpy array, got {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

fn options(flavor: &str, q4_0_legacy: bool) -> PyResult<DatOptions> {
    Ok(DatOptions {
        flavor: Flavor::parse(flavor).py_err()?,
        q40_layout: if q4_0_legacy {
            Q40Layout::Legacy
        } else {
            Q40Layout::Ggml
        },
    })
}

/// Q4_0 blocks (GGML order) with their logical shape: held as bytes, or deferred: the float
/// values they decode to, packed only when written or asked for (see `Q40Tensor.of_values`).
#[pyclass(frozen, module = "torch_to_nnef._rust")]
pub struct Q40Tensor {
    inner: CoreQ40Tensor<Py<PyUntypedArray>>,
}

/// The quantizer's view of a C-contiguous, aligned f32, f16 (or bf16 bits) array, with its shape.
fn q40_input<'a>(
    arr: &'a Bound<'_, PyUntypedArray>,
    bf16: bool,
    name: &str,
) -> PyResult<(Q40Input<'a>, Vec<usize>)> {
    let view = view_of(arr, name)?;
    let input = Q40Input::from_view(&view, bf16, name).py_err()?;
    Ok((input, view.shape().to_vec()))
}

#[pymethods]
impl Q40Tensor {
    /// Quantizes a float array (f32, f16, or bf16 given as its uint16 bits with `bf16=True`).
    #[staticmethod]
    #[pyo3(signature = (array, *, bf16 = false, threads = None, name = "tensor"))]
    fn quantize(
        py: Python<'_>,
        array: &Bound<'_, PyAny>,
        bf16: bool,
        threads: Option<usize>,
        name: &str,
    ) -> PyResult<Q40Tensor> {
        let arr = as_array(array, name)?;
        let arr = if arr.is_c_contiguous() {
            arr
        } else {
            let np = py.import("numpy")?;
            as_array(&np.call_method1("ascontiguousarray", (arr,))?, name)?
        };
        let (input, shape) = q40_input(&arr, bf16, name)?;
        let inner = py
            .detach(|| CoreQ40Tensor::quantize(name, input, shape, threads))
            .py_err()?;
        Ok(Q40Tensor { inner })
    }

    /// Deferred Q4_0 of an f32 or f16 C-contiguous array holding Q4_0 values already (decoded
    /// from blocks, e.g. by `dequantize_into`): the array is referenced, not copied, and packed
    /// into blocks only when written (one tensor at a time) or asked for; values that do not
    /// decode back exactly from their blocks are refused then.
    #[staticmethod]
    #[pyo3(signature = (array, *, name = "tensor"))]
    fn of_values(array: &Bound<'_, PyAny>, name: &str) -> PyResult<Q40Tensor> {
        let arr = as_array(array, name)?;
        let (_, shape) = q40_input(&arr, false, name)?;
        let inner = CoreQ40Tensor::of_values(name, arr.unbind(), shape).py_err()?;
        Ok(Q40Tensor { inner })
    }

    /// Builds a tensor from existing GGML-order blocks.
    #[staticmethod]
    fn from_blocks(blocks: &[u8], shape: Vec<usize>) -> PyResult<Q40Tensor> {
        let inner = CoreQ40Tensor::from_blocks(blocks.to_vec(), shape).py_err()?;
        Ok(Q40Tensor { inner })
    }

    /// Logical shape.
    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.inner.shape().to_vec()
    }

    /// Size of the blocks in bytes (18 per 32 values).
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }

    /// True when the blocks are packed from the referenced values only when needed.
    #[getter]
    fn deferred(&self) -> bool {
        self.inner.is_deferred()
    }

    /// The blocks as bytes (GGML order).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let tensor = self.read(py, q40tensor::VALUES)?;
        let blocks = py.detach(|| tensor.blocks()).py_err()?;
        Ok(PyBytes::new(py, &blocks))
    }

    /// Decodes to a float32 array of the logical shape.
    fn dequantize<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let tensor = self.read(py, q40tensor::VALUES)?;
        let values = py.detach(|| tensor.dequantize()).py_err()?;
        PyArray1::from_vec(py, values).call_method1("reshape", (self.shape(),))
    }

    /// Decodes into `out`, a writable C-contiguous float32 or float16 array with as many values
    /// (e.g. the buffer that was quantized: no new memory is touched); float16 values are the
    /// float32 ones rounded to nearest.
    fn dequantize_into(&self, py: Python<'_>, out: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(array) = out.cast::<PyArrayDyn<f16>>() {
            return self.decode_into(py, array);
        }
        let array = out.cast::<PyArrayDyn<f32>>().map_err(|_| {
            to_pyerr(Error::InvalidArgument(
                "dequantize_into needs a float32 or float16 numpy array".into(),
            ))
        })?;
        self.decode_into(py, array)
    }

    fn __repr__(&self) -> String {
        self.inner.to_string()
    }
}

impl Q40Tensor {
    /// The tensor ready to be read without the GIL: deferred values are viewed now, as `what`.
    fn read<'a>(&'a self, py: Python<'a>, what: &str) -> PyResult<Q40Ref<'a>> {
        self.inner
            .resolve(|arr| q40_input(arr.bind(py), false, what))
    }

    fn decode_into<T: q4_0::Decoded + numpy::Element>(
        &self,
        py: Python<'_>,
        array: &Bound<'_, PyArrayDyn<T>>,
    ) -> PyResult<()> {
        let mut array = array.try_readwrite().map_err(|_| {
            to_pyerr(Error::InvalidArgument(
                "dequantize_into needs a writable array that nothing else borrows".into(),
            ))
        })?;
        let values = array.as_slice_mut().map_err(|_| {
            to_pyerr(Error::InvalidArgument(
                "dequantize_into needs a C-contiguous array".into(),
            ))
        })?;
        self.inner.check_decoded_len(values.len()).py_err()?;
        let tensor = self.read(py, q40tensor::VALUES)?;
        py.detach(|| tensor.dequantize_into(values)).py_err()
    }
}

enum Held<'py> {
    Dense(Bound<'py, PyUntypedArray>),
    Q40(Bound<'py, Q40Tensor>),
}

fn hold<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Held<'py>> {
    if let Ok(q) = obj.cast::<Q40Tensor>() {
        return Ok(Held::Q40(q.clone()));
    }
    Ok(Held::Dense(as_array(obj, what)?))
}

fn source_of<'a>(held: &'a Held<'_>, what: &str) -> PyResult<DatSource<'a>> {
    Ok(match held {
        Held::Dense(arr) => DatSource::Dense(view_of(arr, what)?),
        Held::Q40(q) => q.get().read(q.py(), what)?.into(),
    })
}

/// Writes one tensor (numpy array or Q40Tensor) to a `.dat` file, atomically.
#[pyfunction]
#[pyo3(signature = (path, tensor, *, flavor = "tract", q4_0_legacy = false, overwrite = false))]
fn write_dat(
    py: Python<'_>,
    path: PathBuf,
    tensor: &Bound<'_, PyAny>,
    flavor: &str,
    q4_0_legacy: bool,
    overwrite: bool,
) -> PyResult<()> {
    let opts = options(flavor, q4_0_legacy)?;
    let what = path.display().to_string();
    let held = hold(tensor, &what)?;
    let source = source_of(&held, &what)?;
    py.detach(|| dat::write_dat(&path, &source, &opts, overwrite))
        .py_err()
}

fn hold_all<'py>(tensors: &Bound<'py, PyDict>) -> PyResult<Vec<(String, Held<'py>)>> {
    tensors
        .iter()
        .map(|(k, v)| {
            let label: String = k.extract().map_err(|_| {
                PyTypeError::new_err(format!("tensor labels must be str, got {k:?}"))
            })?;
            let held = hold(&v, &label)?;
            Ok((label, held))
        })
        .collect()
}

fn sources<'a>(held: &'a [(String, Held<'_>)]) -> PyResult<Vec<(String, DatSource<'a>)>> {
    held.iter()
        .map(|(l, h)| Ok((l.clone(), source_of(h, l)?)))
        .collect()
}

/// Writes many tensors into a folder in parallel; returns the paths written.
#[pyfunction]
#[pyo3(signature = (directory, tensors, *, flavor = "tract", q4_0_legacy = false, overwrite = false))]
fn write_dats(
    py: Python<'_>,
    directory: PathBuf,
    tensors: &Bound<'_, PyDict>,
    flavor: &str,
    q4_0_legacy: bool,
    overwrite: bool,
) -> PyResult<Vec<PathBuf>> {
    let opts = options(flavor, q4_0_legacy)?;
    let held = hold_all(tensors)?;
    let srcs = sources(&held)?;
    py.detach(|| dat::write_dats(&directory, &srcs, &opts, overwrite))
        .py_err()
}

fn numpy_from_raw<'py>(py: Python<'py>, t: RawTensor) -> PyResult<Bound<'py, PyAny>> {
    let np_name = match t.dtype {
        DType::F16 => "float16",
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::I8 => "int8",
        DType::I16 => "int16",
        DType::I32 => "int32",
        DType::I64 => "int64",
        DType::U8 => "uint8",
        DType::U16 => "uint16",
        DType::U32 => "uint32",
        DType::U64 => "uint64",
        DType::Bool => "bool",
    };
    PyArray1::from_vec(py, t.bytes)
        .call_method1("view", (np_name,))?
        .call_method1("reshape", (t.shape,))
}

/// Reads a `.dat` file: a numpy array, or a Q40Tensor for Q4_0 files.
#[pyfunction]
fn read_dat<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let t = py.detach(|| dat::read_dat(&path)).py_err()?;
    match t.content {
        DatContent::Dense { dtype, bytes } => numpy_from_raw(
            py,
            RawTensor {
                dtype,
                shape: t.shape,
                bytes,
            },
        ),
        DatContent::Q40 { blocks, .. } => {
            let inner = CoreQ40Tensor::from_blocks(blocks, t.shape).py_err()?;
            Ok(Bound::new(py, Q40Tensor { inner })?.into_any())
        }
    }
}

/// Reads a `.dat` file with tract's own reader; Q4_0 is dequantized to float32.
#[pyfunction]
fn tract_read_dat<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let t = py
        .detach(|| crate::runner::tract_read_dat(&path))
        .py_err()?;
    numpy_from_raw(py, t)
}

/// tract-linalg's own Q4_0 quantizer (single thread), for checks and benchmarks.
#[pyfunction]
fn tract_q4_0_reference<'py>(
    py: Python<'py>,
    array: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let arr = as_array(array, "array")?;
    if !arr.is_c_contiguous() {
        return Err(to_pyerr(Error::InvalidArgument(
            "array must be C-contiguous".into(),
        )));
    }
    let view = view_of(&arr, "array")?;
    let out = py
        .detach(|| q4_0::tract_reference_quantize_view(&view))
        .py_err()?;
    Ok(PyBytes::new(py, &out))
}

/// Writes a model archive (folder, .tar or .tgz, from `kind` or the path's suffix), atomically.
#[pyfunction]
#[pyo3(signature = (path, graph_nnef, tensors, *, graph_quant = None, kind = None,
    compression_level = 6, flavor = "tract", q4_0_legacy = false, overwrite = false))]
#[allow(clippy::too_many_arguments)]
fn write_archive(
    py: Python<'_>,
    path: PathBuf,
    graph_nnef: &str,
    tensors: &Bound<'_, PyDict>,
    graph_quant: Option<&str>,
    kind: Option<&str>,
    compression_level: u32,
    flavor: &str,
    q4_0_legacy: bool,
    overwrite: bool,
) -> PyResult<()> {
    let opts = options(flavor, q4_0_legacy)?;
    let kind = archive_kind(&path, kind, compression_level)?;
    let held = hold_all(tensors)?;
    let files = ModelFiles {
        graph_nnef,
        graph_quant,
        tensors: sources(&held)?,
    };
    py.detach(|| archive::write_archive(&path, kind, &files, &opts, overwrite))
        .py_err()
}

/// An archive written member by member, each tensor whole or in pieces (see `stream.rs`):
/// nothing appears at its path until `finish`; dropped unfinished, it leaves nothing.
#[pyclass(module = "torch_to_nnef._rust")]
pub struct ArchiveWriter {
    inner: Option<ArchiveStream>,
}

impl ArchiveWriter {
    fn stream(&mut self) -> PyResult<&mut ArchiveStream> {
        self.inner.as_mut().ok_or_else(|| {
            to_pyerr(Error::InvalidArgument(
                "this archive is finished or aborted: start another one".into(),
            ))
        })
    }
}

#[pymethods]
impl ArchiveWriter {
    /// Starts an archive (folder, .tar or .tgz, from `kind` or the path's suffix).
    #[new]
    #[pyo3(signature = (path, *, kind = None, compression_level = 0, flavor = "tract",
        q4_0_legacy = false, overwrite = false))]
    fn new(
        path: PathBuf,
        kind: Option<&str>,
        compression_level: u32,
        flavor: &str,
        q4_0_legacy: bool,
        overwrite: bool,
    ) -> PyResult<ArchiveWriter> {
        let opts = options(flavor, q4_0_legacy)?;
        let kind = archive_kind(&path, kind, compression_level)?;
        let inner = ArchiveStream::create(&path, kind, opts, overwrite).py_err()?;
        Ok(ArchiveWriter { inner: Some(inner) })
    }

    /// Bytes written so far (members' headers and payloads).
    #[getter]
    fn written(&self) -> u64 {
        self.inner.as_ref().map_or(0, |s| s.written())
    }

    /// Adds a text member such as `graph.nnef`.
    fn add_text(&mut self, py: Python<'_>, name: &str, text: &str) -> PyResult<()> {
        let stream = self.stream()?;
        let bytes = text.as_bytes().to_vec();
        py.detach(|| stream.add_file(name, bytes)).py_err()
    }

    /// Adds a whole tensor (numpy array or Q40Tensor) as `<label>.dat`.
    fn add_tensor(
        &mut self,
        py: Python<'_>,
        label: &str,
        tensor: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let held = hold(tensor, label)?;
        let source = source_of(&held, label)?;
        let stream = self.stream()?;
        py.detach(|| stream.add_tensor(label, &source)).py_err()
    }

    /// Starts `<label>.dat` of `shape`: dense elements of `dtype` (`"f16"`, `"i64"`, ...), or Q4_0
    /// blocks with `q4_0=True` (`dtype` ignored). Its pieces follow (`write`), then `end_tensor`.
    #[pyo3(signature = (label, dtype, shape, *, q4_0 = false))]
    fn begin_tensor(
        &mut self,
        py: Python<'_>,
        label: &str,
        dtype: &str,
        shape: Vec<usize>,
        q4_0: bool,
    ) -> PyResult<()> {
        let stream = self.stream()?;
        let opts = stream.options();
        let (header, element) = if q4_0 {
            (
                DatHeader::for_q4_0(label, &shape, opts.q40_layout).py_err()?,
                None,
            )
        } else {
            let element = DType::parse(dtype).ok_or_else(|| {
                to_pyerr(Error::InvalidArgument(format!(
                    "{label}: unknown element type {dtype:?}: use f16, f32, f64, i8..i64, u8..u64 or bool"
                )))
            })?;
            (
                DatHeader::for_dense(label, element, &shape, opts.flavor).py_err()?,
                Some(element),
            )
        };
        py.detach(|| stream.begin_tensor(label, header, element))
            .py_err()
    }

    /// Appends a piece of the open tensor: a C-contiguous numpy array of its element type (dense),
    /// or float values whose Q4_0 blocks are appended (f32 or f16, whole blocks of 32).
    #[pyo3(signature = (array, *, threads = None))]
    fn write(
        &mut self,
        py: Python<'_>,
        array: &Bound<'_, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<()> {
        let arr = as_array(array, "piece")?;
        let view = view_of(&arr, "piece")?;
        let stream = self.stream()?;
        let Some(bytes) = view.as_contiguous() else {
            return Err(to_pyerr(Error::InvalidArgument(
                "pieces must be C-contiguous: pass numpy.ascontiguousarray(x)".into(),
            )));
        };
        if stream.is_q4_0() {
            let values = Q40Input::from_view(&view, false, "piece").py_err()?;
            return py.detach(|| stream.write_q4_0(values, threads)).py_err();
        }
        let dtype = view.dtype();
        py.detach(|| stream.write_dense(dtype, bytes)).py_err()
    }

    /// Appends `length` bytes of the file `path` from `offset` to the open tensor, read (by a
    /// thread) without passing through Python: a dense tensor's elements as stored, or with
    /// `values` (`"f32"`, `"f16"`, `"bf16"`) little-endian values quantized to Q4_0 as they are read.
    #[pyo3(signature = (path, offset, length, *, values = None, threads = None))]
    fn write_file_region(
        &mut self,
        py: Python<'_>,
        path: PathBuf,
        offset: u64,
        length: u64,
        values: Option<&str>,
        threads: Option<usize>,
    ) -> PyResult<()> {
        let values = match values {
            None => None,
            Some("f32") => Some(RegionValues::F32),
            Some("f16") => Some(RegionValues::F16),
            Some("bf16") => Some(RegionValues::Bf16),
            Some(other) => {
                return Err(to_pyerr(Error::InvalidArgument(format!(
                    "values {other:?} cannot be quantized: use \"f32\", \"f16\" or \"bf16\""
                ))))
            }
        };
        let stream = self.stream()?;
        py.detach(|| stream.write_file_region(&path, offset, length, values, threads))
            .py_err()
    }

    /// Closes the open tensor (every byte of its payload must have been written).
    fn end_tensor(&mut self) -> PyResult<()> {
        self.stream()?.end_tensor().py_err()
    }

    /// Writes the end of the archive and moves it into place.
    fn finish(&mut self, py: Python<'_>) -> PyResult<()> {
        let stream = self.inner.take().ok_or_else(|| {
            to_pyerr(Error::InvalidArgument(
                "this archive is finished or aborted already".into(),
            ))
        })?;
        py.detach(|| stream.finish()).py_err()
    }

    /// Stops writing: nothing is left at the path, nor any temporary file.
    fn abort(&mut self, py: Python<'_>) {
        if let Some(stream) = self.inner.take() {
            py.detach(|| drop(stream));
        }
    }
}

fn archive_kind(
    path: &std::path::Path,
    kind: Option<&str>,
    compression_level: u32,
) -> PyResult<ArchiveKind> {
    Ok(match kind {
        None => ArchiveKind::from_path(path, compression_level),
        Some("folder") => ArchiveKind::Folder,
        Some("tar") => ArchiveKind::Tar,
        Some("tgz") => ArchiveKind::TarGz(compression_level),
        Some(other) => {
            return Err(to_pyerr(Error::InvalidArgument(format!(
                "unknown archive kind {other:?}: use \"folder\", \"tar\" or \"tgz\""
            ))))
        }
    })
}

/// Lists the members of a .tar/.tgz (path or bytes), refusing unsafe ones.
#[pyfunction]
fn scan_archive(py: Python<'_>, source: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(b) = source.cast::<PyBytes>() {
        let bytes = b.as_bytes();
        return py
            .detach(|| archive::scan_archive("archive bytes", bytes))
            .py_err();
    }
    let path: PathBuf = source.extract()?;
    py.detach(|| {
        let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        archive::scan_archive(&path.display().to_string(), std::io::BufReader::new(f))
    })
    .py_err()
}

fn raw_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<RawTensor> {
    let arr = as_array(obj, what)?;
    let view = view_of(&arr, what)?;
    let mut bytes = Vec::with_capacity(view.nbytes());
    view.write_elements(&mut bytes)
        .map_err(|e| to_pyerr(Error::io(what, e)))?;
    Ok(RawTensor {
        dtype: view.dtype(),
        shape: view.shape().to_vec(),
        bytes,
    })
}

/// An NNEF model loaded into the linked tract.
#[pyclass(frozen, module = "torch_to_nnef._rust")]
pub struct TractModel {
    inner: CoreModel,
}

#[pymethods]
impl TractModel {
    #[new]
    #[pyo3(signature = (source, *, symbols = None, registries = None, optimize = true))]
    fn new(
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        symbols: Option<Vec<(String, i64)>>,
        registries: Option<Vec<String>>,
        optimize: bool,
    ) -> PyResult<TractModel> {
        let regs = match registries {
            None => Registries::ALL,
            Some(names) => {
                let mut r = Registries::STANDARD;
                for n in names {
                    match n.as_str() {
                        "tract_core" => r.tract_core = true,
                        "tract_transformers" => r.tract_transformers = true,
                        "tract_pulse" => r.tract_pulse = true,
                        other => {
                            return Err(to_pyerr(Error::InvalidArgument(format!(
                                "unknown registry {other:?}: use tract_core, \
                                 tract_transformers or tract_pulse"
                            ))))
                        }
                    }
                }
                r
            }
        };
        let symbols = symbols.unwrap_or_default();
        let inner = if let Ok(b) = source.cast::<PyBytes>() {
            let bytes = b.as_bytes();
            py.detach(|| CoreModel::load(ModelSource::Bytes(bytes), regs, &symbols, optimize))
        } else {
            let path: PathBuf = source.extract().map_err(|_| {
                PyTypeError::new_err("source must be a path (str or os.PathLike) or bytes")
            })?;
            py.detach(|| CoreModel::load(ModelSource::Path(&path), regs, &symbols, optimize))
        }
        .py_err()?;
        Ok(TractModel { inner })
    }

    /// `(name, dtype, shape)` of each input.
    #[getter]
    fn inputs(&self) -> Vec<(String, String, String)> {
        self.inner
            .inputs()
            .iter()
            .map(|f| (f.name.clone(), f.dtype.clone(), f.shape.clone()))
            .collect()
    }

    /// `(name, dtype, shape)` of each output.
    #[getter]
    fn outputs(&self) -> Vec<(String, String, String)> {
        self.inner
            .outputs()
            .iter()
            .map(|f| (f.name.clone(), f.dtype.clone(), f.shape.clone()))
            .collect()
    }

    /// The model's `tract_core_properties` as `(key, text)` pairs.
    #[getter]
    fn properties(&self) -> Vec<(String, String)> {
        self.inner.properties().to_vec()
    }

    /// Runs the model on numpy inputs; returns numpy outputs.
    fn run<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let raws = inputs
            .iter()
            .enumerate()
            .map(|(i, a)| raw_of(a, &format!("input {i}")))
            .collect::<PyResult<Vec<_>>>()?;
        let outs = py.detach(|| self.inner.run(raws)).py_err()?;
        outs.into_iter().map(|t| numpy_from_raw(py, t)).collect()
    }
}

/// Compares two arrays at one of tract's tolerance levels; returns a dict report.
#[pyfunction]
#[pyo3(signature = (expected, got, tolerance = "approximate"))]
fn compare<'py>(
    py: Python<'py>,
    expected: &Bound<'py, PyAny>,
    got: &Bound<'py, PyAny>,
    tolerance: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let tol = Tolerance::parse(tolerance).py_err()?;
    let e = raw_of(expected, "expected")?;
    let g = raw_of(got, "got")?;
    let r = py.detach(|| cmp::compare(&e, &g, tol));
    let d = PyDict::new(py);
    d.set_item("passed", r.passed)?;
    d.set_item("problem", r.problem)?;
    d.set_item("max_abs_err", r.max_abs_err)?;
    d.set_item("max_rel_err", r.max_rel_err)?;
    d.set_item("outliers", r.outliers)?;
    d.set_item("outlier_fraction", r.outlier_fraction)?;
    d.set_item("allowed_outlier_fraction", r.allowed_outlier_fraction)?;
    d.set_item("atol", r.atol)?;
    d.set_item("rtol", r.rtol)?;
    d.set_item("first_outlier", r.first_outlier)?;
    Ok(d)
}

/// Checks tensor labels (relative, inside their folder, unique) without writing anything.
#[pyfunction]
fn check_labels(labels: Vec<String>) -> PyResult<()> {
    let mut seen = std::collections::HashSet::new();
    for l in &labels {
        crate::fsutil::validate_label("tensor", l).py_err()?;
        if !seen.insert(l.as_str()) {
            return Err(to_pyerr(Error::DuplicateLabel { label: l.clone() }));
        }
    }
    Ok(())
}

/// The version of tract linked in.
#[pyfunction]
fn tract_version() -> &'static str {
    "0.23.9"
}

/// The extension module `torch_to_nnef._rust`.
#[pymodule]
fn _rust(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Q40Tensor>()?;
    m.add_class::<TractModel>()?;
    m.add_class::<ArchiveWriter>()?;
    m.add_function(wrap_pyfunction!(write_dat, m)?)?;
    m.add_function(wrap_pyfunction!(write_dats, m)?)?;
    m.add_function(wrap_pyfunction!(read_dat, m)?)?;
    m.add_function(wrap_pyfunction!(tract_read_dat, m)?)?;
    m.add_function(wrap_pyfunction!(tract_q4_0_reference, m)?)?;
    m.add_function(wrap_pyfunction!(write_archive, m)?)?;
    m.add_function(wrap_pyfunction!(scan_archive, m)?)?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_function(wrap_pyfunction!(check_labels, m)?)?;
    m.add_function(wrap_pyfunction!(tract_version, m)?)?;
    Ok(())
}
