//! Model archives written member by member, each tensor in pieces: the streamed counterpart of
//! [`crate::archive::write_archive`] for models whose weights are never all in memory at once.
//!
//! An [`ArchiveStream`] hands each piece to a writer thread over a bounded queue, so that reading
//! and converting the next piece overlaps writing the previous one, and at most
//! [`QUEUED_PIECES`] pieces wait in memory. The archive appears at its path only once
//! [`ArchiveStream::finish`] succeeds; dropped before, or after any error, it leaves nothing.
//! The members and their bytes are those [`crate::archive::write_archive`] writes for the same
//! tensors in the same order.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use flate2::{write::GzEncoder, Compression};

use crate::archive::{member_header, ArchiveKind};
use crate::dat::{DatHeader, DatOptions, DatSource, HEADER_LEN};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::fsutil::{validate_label, validate_member_path, AtomicDir, AtomicFile};
use crate::q4_0::{self, Q40Input, Q40Layout};

/// Pieces that may wait for the writer thread: the memory a stream holds beyond the piece being
/// made is at most this many pieces.
pub const QUEUED_PIECES: usize = 4;

/// Bytes of a file read at a time by [`ArchiveStream::write_file_region`].
pub const REGION_PIECE_BYTES: usize = 32 << 20;

/// Buffers of values to quantize that [`ArchiveStream::write_file_region`] reads into: one being
/// quantized, one waiting, one being read.
const REGION_BUFFERS: usize = 3;

/// The type of the values a file region holds, for a Q4_0 tensor quantized as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionValues {
    /// f32 values.
    F32,
    /// f16 values.
    F16,
    /// bf16 values.
    Bf16,
}

impl RegionValues {
    fn size(self) -> usize {
        match self {
            RegionValues::F32 => 4,
            RegionValues::F16 | RegionValues::Bf16 => 2,
        }
    }
}

enum Piece {
    /// A new member of `size` bytes; its bytes follow.
    Begin {
        name: String,
        size: u64,
    },
    Bytes(Vec<u8>),
    /// Every member is written: close the archive and move it into place.
    Commit,
}

/// What the member being written still expects.
struct OpenTensor {
    label: String,
    /// Payload bytes still to come.
    remaining: u64,
    /// `None` for Q4_0 blocks, else the element type of the dense payload.
    dtype: Option<DType>,
}

/// An archive being written member by member (see the module documentation).
pub struct ArchiveStream {
    path: PathBuf,
    sender: Option<SyncSender<Piece>>,
    worker: Option<JoinHandle<Result<()>>>,
    opts: DatOptions,
    labels: HashSet<String>,
    open: Option<OpenTensor>,
    written: u64,
    /// Buffers of file regions' values, kept for the next region.
    region_buffers: Vec<Vec<u32>>,
}

impl ArchiveStream {
    /// Starts writing an archive of `kind` at `path` (checked now: its folder must exist, and an
    /// existing output is refused unless `overwrite`).
    pub fn create(
        path: &Path,
        kind: ArchiveKind,
        opts: DatOptions,
        overwrite: bool,
    ) -> Result<Self> {
        kind.check()?;
        let (sender, receiver) = sync_channel(QUEUED_PIECES);
        let worker = match kind {
            ArchiveKind::Folder => {
                let dir = AtomicDir::create(path, overwrite)?;
                std::thread::spawn(move || write_folder(dir, &receiver, overwrite))
            }
            ArchiveKind::Tar | ArchiveKind::TarGz(_) => {
                let file = AtomicFile::create(path, overwrite)?;
                let shown = path.to_path_buf();
                std::thread::spawn(move || write_tar(file, kind, &receiver, &shown, overwrite))
            }
        };
        Ok(ArchiveStream {
            path: path.to_path_buf(),
            sender: Some(sender),
            worker: Some(worker),
            opts,
            labels: HashSet::new(),
            open: None,
            written: 0,
            region_buffers: Vec::new(),
        })
    }

    /// How the tensors' `.dat` files are written.
    pub fn options(&self) -> DatOptions {
        self.opts
    }

    /// True while a Q4_0 tensor is open (its pieces are values to quantize).
    pub fn is_q4_0(&self) -> bool {
        matches!(&self.open, Some(open) if open.dtype.is_none())
    }

    /// Bytes handed to the writer so far (headers and payloads, without the container's own).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Adds a text member (`graph.nnef`, `graph.quant`).
    pub fn add_file(&mut self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.check_closed("add a file")?;
        validate_member_path("archive member", Path::new(name))?;
        self.claim(name.to_string())?;
        self.begin(name.to_string(), bytes.len() as u64)?;
        self.send(Piece::Bytes(bytes))
    }

    /// Adds a whole tensor as `<label>.dat`.
    pub fn add_tensor(&mut self, label: &str, source: &DatSource) -> Result<()> {
        self.check_closed("add a tensor")?;
        let size = source.file_len(label, &self.opts)?;
        let mut bytes = Vec::with_capacity(size as usize);
        source.write_to(label, &self.opts, &mut bytes)?;
        self.start_tensor(label)?;
        self.begin(format!("{label}.dat"), size)?;
        self.send(Piece::Bytes(bytes))
    }

    /// Starts `<label>.dat` with `header`; its payload follows in pieces ([`Self::write_dense`] or
    /// [`Self::write_q4_0`]) and [`Self::end_tensor`] closes it.
    pub fn begin_tensor(
        &mut self,
        label: &str,
        header: DatHeader,
        dtype: Option<DType>,
    ) -> Result<()> {
        self.check_closed("begin a tensor")?;
        if dtype == Some(DType::Bool) && header.bits_per_item == 1 {
            return Err(Error::InvalidArgument(format!(
                "{label}: one-bit booleans cannot be written in pieces; add the whole tensor"
            )));
        }
        self.start_tensor(label)?;
        let size = HEADER_LEN as u64 + header.data_size as u64;
        self.begin(format!("{label}.dat"), size)?;
        self.open = Some(OpenTensor {
            label: label.to_string(),
            remaining: header.data_size as u64,
            dtype,
        });
        self.send(Piece::Bytes(header.encode().to_vec()))
    }

    /// Appends dense elements of type `dtype` (row-major bytes) to the open tensor.
    pub fn write_dense(&mut self, dtype: DType, bytes: &[u8]) -> Result<()> {
        let open = self.expect_open()?;
        match open.dtype {
            Some(expected) if expected == dtype => {}
            Some(expected) => {
                return Err(Error::InvalidArgument(format!(
                    "{}: a piece of {} for a tensor of {}",
                    open.label,
                    dtype.name(),
                    expected.name()
                )))
            }
            None => {
                return Err(Error::InvalidArgument(format!(
                "{}: a Q4_0 tensor takes float values to quantize (write_q4_0), not dense bytes",
                open.label
            )))
            }
        }
        self.push(bytes.to_vec())
    }

    /// Quantizes `values` (whole blocks of 32) and appends their blocks to the open Q4_0 tensor.
    pub fn write_q4_0(&mut self, values: Q40Input, threads: Option<usize>) -> Result<()> {
        let open = self.expect_open()?;
        if open.dtype.is_some() {
            return Err(Error::InvalidArgument(format!(
                "{}: a dense tensor takes its own elements (write_dense), not values to quantize",
                open.label
            )));
        }
        let n = values.len();
        if !n.is_multiple_of(q4_0::BLOCK_LEN) {
            return Err(Error::Shape {
                what: open.label.clone(),
                reason: format!(
                    "a piece of {n} values is not whole Q4_0 blocks of {}: cut pieces at rows",
                    q4_0::BLOCK_LEN
                ),
            });
        }
        let what = open.label.clone();
        let mut blocks = q4_0::quantize(
            &what,
            values,
            &[n / q4_0::BLOCK_LEN, q4_0::BLOCK_LEN],
            threads,
        )?;
        if self.opts.q40_layout == Q40Layout::Legacy {
            q4_0::ggml_to_legacy(&mut blocks);
        }
        self.push(blocks)
    }

    /// Appends `len` bytes of the file `path` from `offset` to the open tensor, read by a thread of
    /// its own while the previous piece is handed on: a dense tensor's elements as they are
    /// stored, or, for a Q4_0 tensor, little-endian `values` quantized as they are read. The memory
    /// held is a few pieces of [`REGION_PIECE_BYTES`].
    pub fn write_file_region(
        &mut self,
        path: &Path,
        offset: u64,
        len: u64,
        values: Option<RegionValues>,
        threads: Option<usize>,
    ) -> Result<()> {
        if cfg!(target_endian = "big") {
            return Err(Error::InvalidArgument(
                "file regions hold little-endian values: read them on a little-endian machine"
                    .into(),
            ));
        }
        let open = self.expect_open()?;
        let q4_0 = open.dtype.is_none();
        if q4_0 != values.is_some() {
            return Err(Error::InvalidArgument(format!(
                "{}: a Q4_0 tensor reads values of a given type, a dense one its elements as they are",
                open.label
            )));
        }
        let unit = values.map_or(1, |v| v.size() * q4_0::BLOCK_LEN);
        if !len.is_multiple_of(unit as u64) {
            return Err(Error::Shape {
                what: open.label.clone(),
                reason: format!("a region of {len} bytes is not whole Q4_0 blocks of {unit} bytes"),
            });
        }
        let step = (REGION_PIECE_BYTES / unit).max(1) * unit;
        let (sender, receiver) = sync_channel::<ReadPiece>(1);
        // Q4_0 pieces come back once quantized, to be read into again: at most REGION_BUFFERS
        // buffers in all, kept from one region to the next (no fresh pages to fault in and zero)
        let (recycle, recycled) = sync_channel::<Vec<u32>>(REGION_BUFFERS);
        let kept = self.region_buffers.len();
        for words in self.region_buffers.drain(..) {
            let _ = recycle.try_send(words);
        }
        let source = path.to_path_buf();
        let dense = values.is_none();
        let reader = std::thread::spawn(move || {
            let read = read_region(&source, offset, len, step, dense, &sender, &recycled, kept);
            (read, recycled)
        });
        let mut result = Ok(());
        for piece in receiver.iter() {
            result = match piece {
                ReadPiece::Bytes(bytes) => self.push(bytes),
                ReadPiece::Values(words, size) => {
                    let input = match values.expect("values for a Q4_0 tensor") {
                        RegionValues::F32 => Q40Input::F32(as_values(&words, size)),
                        RegionValues::F16 => Q40Input::F16(as_values(&words, size)),
                        RegionValues::Bf16 => Q40Input::Bf16(as_values(&words, size)),
                    };
                    let written = self.write_q4_0(input, threads);
                    let _ = recycle.try_send(words);
                    written
                }
            };
            if result.is_err() {
                break;
            }
        }
        drop(receiver);
        drop(recycle);
        let read = match reader.join() {
            Ok((read, recycled)) => {
                self.region_buffers.extend(recycled.try_iter());
                read
            }
            Err(_) => Err(Error::io(path, io::Error::other("the reader panicked"))),
        };
        result.and(read)
    }

    /// Closes the open tensor, checking that its whole payload was written.
    pub fn end_tensor(&mut self) -> Result<()> {
        let open = self.expect_open()?;
        if open.remaining != 0 {
            return Err(Error::Shape {
                what: open.label.clone(),
                reason: format!("{} bytes of its payload are missing", open.remaining),
            });
        }
        self.open = None;
        Ok(())
    }

    /// Writes the end of the archive and moves it into place.
    pub fn finish(mut self) -> Result<()> {
        if let Some(open) = &self.open {
            return Err(Error::InvalidArgument(format!(
                "{} is not complete: end it before finishing the archive",
                open.label
            )));
        }
        self.send(Piece::Commit)?;
        drop(self.sender.take());
        self.join()
    }

    fn check_closed(&self, action: &str) -> Result<()> {
        match &self.open {
            Some(open) => Err(Error::InvalidArgument(format!(
                "cannot {action} while {} is being written: end it first",
                open.label
            ))),
            None => Ok(()),
        }
    }

    fn expect_open(&self) -> Result<&OpenTensor> {
        self.open.as_ref().ok_or_else(|| {
            Error::InvalidArgument("no tensor is being written: begin one first".into())
        })
    }

    fn start_tensor(&mut self, label: &str) -> Result<()> {
        validate_label("tensor", label)?;
        self.claim(format!("{label}.dat"))
    }

    fn claim(&mut self, name: String) -> Result<()> {
        if !self.labels.insert(name.clone()) {
            return Err(Error::DuplicateLabel { label: name });
        }
        Ok(())
    }

    fn begin(&mut self, name: String, size: u64) -> Result<()> {
        self.written += size;
        self.send(Piece::Begin { name, size })
    }

    fn push(&mut self, bytes: Vec<u8>) -> Result<()> {
        let open = self.open.as_mut().expect("checked by the caller");
        if bytes.len() as u64 > open.remaining {
            return Err(Error::Shape {
                what: open.label.clone(),
                reason: format!(
                    "a piece of {} bytes where {} remain of its payload",
                    bytes.len(),
                    open.remaining
                ),
            });
        }
        open.remaining -= bytes.len() as u64;
        self.send(Piece::Bytes(bytes))
    }

    fn send(&mut self, piece: Piece) -> Result<()> {
        let sent = match &self.sender {
            Some(sender) => sender.send(piece).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped: its error says why.
        drop(self.sender.take());
        self.join()?;
        Err(Error::io(
            &self.path,
            io::Error::other("the archive writer stopped"),
        ))
    }

    fn join(&mut self) -> Result<()> {
        match self.worker.take() {
            Some(worker) => worker.join().unwrap_or_else(|_| {
                Err(Error::io(
                    &self.path,
                    io::Error::other("the archive writer panicked"),
                ))
            }),
            None => Ok(()),
        }
    }
}

impl Drop for ArchiveStream {
    /// Stops the writer; an unfinished archive is removed.
    fn drop(&mut self) {
        drop(self.sender.take());
        let _ = self.join();
    }
}

fn aborted(path: &Path) -> Error {
    Error::io(path, io::Error::other("the archive was not finished"))
}

/// Reads one member's bytes off the queue.
struct MemberReader<'a> {
    receiver: &'a Receiver<Piece>,
    remaining: u64,
    piece: Vec<u8>,
    at: usize,
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.piece.len() {
            if self.remaining == 0 {
                return Ok(0);
            }
            match self.receiver.recv() {
                Ok(Piece::Bytes(bytes)) => {
                    self.remaining = self
                        .remaining
                        .checked_sub(bytes.len() as u64)
                        .ok_or_else(|| io::Error::other("a member got more bytes than its size"))?;
                    self.piece = bytes;
                    self.at = 0;
                }
                Ok(_) | Err(_) => {
                    return Err(io::Error::other(
                        "the archive stopped in the middle of a member",
                    ))
                }
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn write_tar(
    mut file: AtomicFile,
    kind: ArchiveKind,
    receiver: &Receiver<Piece>,
    path: &Path,
    overwrite: bool,
) -> Result<()> {
    let io_err = |e| Error::io(path, e);
    let committed = {
        let w = BufWriter::with_capacity(1 << 20, file.file());
        let (w, committed) = match kind {
            ArchiveKind::TarGz(level) => {
                let (gz, committed) =
                    fill_tar(GzEncoder::new(w, Compression::new(level)), receiver, path)?;
                (gz.finish().map_err(io_err)?, committed)
            }
            _ => fill_tar(w, receiver, path)?,
        };
        w.into_inner()
            .map_err(|e| io_err(e.into_error()))?
            .flush()
            .map_err(io_err)?;
        committed
    };
    if !committed {
        return Err(aborted(path));
    }
    file.commit(overwrite)
}

/// Writes members until the commit (true) or until the queue closes (false).
fn fill_tar<W: Write>(w: W, receiver: &Receiver<Piece>, path: &Path) -> Result<(W, bool)> {
    let mut builder = tar::Builder::new(w);
    let committed = loop {
        match receiver.recv() {
            Ok(Piece::Begin { name, size }) => {
                let mut reader = MemberReader {
                    receiver,
                    remaining: size,
                    piece: Vec::new(),
                    at: 0,
                };
                builder
                    .append_data(&mut member_header(size), &name, &mut reader)
                    .map_err(|e| Error::io(path, e))?;
            }
            Ok(Piece::Commit) => break true,
            Ok(Piece::Bytes(_)) => unreachable!("bytes come after the start of their member"),
            Err(_) => break false,
        }
    };
    let w = builder.into_inner().map_err(|e| Error::io(path, e))?;
    Ok((w, committed))
}

fn write_folder(dir: AtomicDir, receiver: &Receiver<Piece>, overwrite: bool) -> Result<()> {
    loop {
        match receiver.recv() {
            Ok(Piece::Begin { name, size }) => {
                let path = dir.path().join(&name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                }
                let mut file = BufWriter::with_capacity(
                    1 << 20,
                    File::create(&path).map_err(|e| Error::io(&path, e))?,
                );
                let mut reader = MemberReader {
                    receiver,
                    remaining: size,
                    piece: Vec::new(),
                    at: 0,
                };
                io::copy(&mut reader, &mut file).map_err(|e| Error::io(&path, e))?;
                file.flush().map_err(|e| Error::io(&path, e))?;
            }
            Ok(Piece::Commit) => return dir.commit(overwrite),
            Ok(Piece::Bytes(_)) => unreachable!("bytes come after the start of their member"),
            Err(_) => return Err(aborted(dir.path())),
        }
    }
}

/// A piece of a file region: bytes handed on as they are, or values (in 4-byte aligned memory,
/// the alignment of every value type Q4_0 reads) with their size in bytes.
enum ReadPiece {
    Bytes(Vec<u8>),
    Values(Vec<u32>, usize),
}

/// The first `size` bytes of `words` as values of `T` (f32, f16 or bf16).
fn as_values<T: Copy>(words: &[u32], size: usize) -> &[T] {
    assert!(std::mem::align_of::<T>() <= 4 && size <= words.len() * 4);
    // SAFETY: the words are 4-byte aligned, `T` needs no more, any bit pattern is a `T` (only
    // called with f32, f16 and bf16), and `size / size_of::<T>()` values lie within the words.
    unsafe {
        std::slice::from_raw_parts(words.as_ptr() as *const T, size / std::mem::size_of::<T>())
    }
}

/// Reads `len` bytes of `path` from `offset` in pieces of `step` bytes, sent one by one (the
/// bounded queue keeps one piece ahead of its reader): fresh byte buffers for a `dense` region
/// (handed on to the writer), else word buffers, reused once `recycled`. Stops quietly when the
/// receiving side is gone (its own error is the one reported).
#[allow(clippy::too_many_arguments)]
fn read_region(
    path: &Path,
    offset: u64,
    len: u64,
    step: usize,
    dense: bool,
    sender: &SyncSender<ReadPiece>,
    recycled: &Receiver<Vec<u32>>,
    mut buffers: usize,
) -> Result<()> {
    let io_err = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::Format {
                path: path.display().to_string(),
                reason: format!(
                    "it ends inside a region of {len} bytes from offset {offset}: the file is truncated"
                ),
            }
        } else {
            Error::io(path, e)
        }
    };
    let mut file = File::open(path).map_err(io_err)?;
    file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
    let mut left = len;
    while left > 0 {
        let size = (left as usize).min(step);
        let piece = if dense {
            // read into spare capacity: no zero-filling first
            let mut bytes = Vec::with_capacity(size);
            let read = (&mut file)
                .take(size as u64)
                .read_to_end(&mut bytes)
                .map_err(io_err)?;
            if read != size {
                return Err(io_err(io::ErrorKind::UnexpectedEof.into()));
            }
            ReadPiece::Bytes(bytes)
        } else {
            let mut words = match recycled.try_recv() {
                Ok(words) => words,
                Err(_) if buffers < REGION_BUFFERS => {
                    buffers += 1;
                    Vec::new()
                }
                Err(_) => match recycled.recv() {
                    Ok(words) => words,
                    Err(_) => return Ok(()), // the consumer stopped
                },
            };
            words.resize(size.div_ceil(4), 0u32);
            // SAFETY: the words own `4 * words.len() >= size` writable bytes, any byte is valid.
            let target =
                unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, size) };
            file.read_exact(target).map_err(io_err)?;
            ReadPiece::Values(words, size)
        };
        if sender.send(piece).is_err() {
            return Ok(());
        }
        left -= size as u64;
    }
    Ok(())
}
