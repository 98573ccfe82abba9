//! The store's driver on `std::fs`: recovery at open, group commit through a journal with
//! `fdatasync`, reads through shared memory maps, deletion of reclaimed segments.
//!
//! [`FsStore`] holds the [`Store`] bookkeeping and the read maps; its blocking part,
//! [`Files`] (open segment files and the journal), runs [`Job`]s. Tools, tests and the crash
//! test's writer run jobs in place ([`FsStore::commit`]); a shard runs them on its executor's
//! blocking thread (`runtime::store`), so no blocking call happens on a shard thread.
//!
//! Durability rules it keeps:
//! - a batch's acknowledgements are released only after its journal entry is `fdatasync`ed
//!   (or, for a batch too large for the journal, after every file it wrote is); a segment
//!   file's name is made durable (its directory `fsync`ed) at the next checkpoint, before any
//!   journal entry that could recreate it is dropped, and the journal is replayed at start;
//! - a failed batch is rolled back by truncating each file to its durable length; until that
//!   succeeds (e.g. once space returns on a full disk) every batch fails unwritten, so bytes of
//!   a failed batch can never be followed by newer records and read back as stored;
//! - a torn tail found at open is truncated before any mapping is made for reading.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::limits::{STORE_JOURNAL_BYTES, STORE_MAPS_MAX, STORE_OPEN_FILES_MAX};
use crate::store::core::{Ack, IoBatch, Policy, SegmentRef, Store, StoreError, Ticket};
use crate::store::journal;
use crate::store::record::{decode, MessageId, Meta, Record};
use crate::store::scan::{scan, Tail};
use crate::store::RecipientKey;

/// What opening (recovering) a store found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub bytes: u64,
    pub records: usize,
    /// Corrupt regions skipped (records around them kept).
    pub corrupt: usize,
    /// Torn tails cut off (never acknowledged writes).
    pub torn_tails: usize,
    pub truncated_bytes: u64,
    pub pending_messages: usize,
    /// Journal entries redone into segment files.
    pub journal_entries: usize,
    pub elapsed: Duration,
}

impl RecoveryReport {
    /// Adds another partition's report (elapsed times add: partitions recover one by one).
    pub fn add(&mut self, o: &RecoveryReport) {
        self.segments += o.segments;
        self.bytes += o.bytes;
        self.records += o.records;
        self.corrupt += o.corrupt;
        self.torn_tails += o.torn_tails;
        self.truncated_bytes += o.truncated_bytes;
        self.pending_messages += o.pending_messages;
        self.journal_entries += o.journal_entries;
        self.elapsed += o.elapsed;
    }
}

/// A store on disk, driven synchronously.
pub struct FsStore {
    root: PathBuf,
    core: Store,
    /// The files and journal; `None` while a job runs elsewhere.
    files: Option<Files>,
    /// Read-only maps of segments' durable prefixes, kept between reads and replaced by a
    /// longer one when a read needs bytes past the end. Dropped before a file is cut back or
    /// deleted; a map handed out with a read only ever covers a durable prefix, which no cut
    /// reaches.
    maps: HashMap<SegmentRef, Arc<MapOrEmpty>>,
    /// Segments written by failed batches whose cut back to their durable length (asked of
    /// the bookkeeping when it is done) has not succeeded yet.
    dirty: Vec<SegmentRef>,
    /// Reclaimed segments not deleted yet (a checkpoint or a delete failed).
    to_delete: Vec<SegmentRef>,
    /// The whole store's lock, when this store took it (tools); a server's main thread holds
    /// it for all partitions.
    _lock: Option<File>,
}

/// The journal file and what the driver knows of it.
struct Journal {
    file: File,
    /// Bytes of the file in use ([`STORE_JOURNAL_BYTES`]; smaller in tests).
    capacity: u64,
    generation: u64,
    /// Where the next entry goes.
    pos: u64,
    /// Segments written since the last checkpoint (their bytes are durable only through the
    /// journal until the checkpoint syncs them).
    unsynced: std::collections::BTreeSet<SegmentRef>,
    /// Directories whose new entries (segment files, recipient directories) are not synced.
    new_dirs: std::collections::BTreeSet<PathBuf>,
    /// A batch failed: start a new generation before the next write, so that none of its
    /// entries can ever be replayed.
    needs_checkpoint: bool,
    buf: Vec<u8>,
}

fn seg_dir(root: &Path, key: RecipientKey) -> PathBuf {
    let hex = key.hex();
    root.join(&hex[..2]).join(hex)
}

fn seg_path(root: &Path, seg: SegmentRef) -> PathBuf {
    seg_dir(root, seg.recipient).join(format!("{:016x}.seg", seg.seq))
}

/// Takes the store's lock (`flock` on `store/lock`), or says who to stop.
fn lock_store(root: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(root.join("lock"))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "the store under {} is in use by another process (stop the server, or work on a copy)",
                    root.display()
                ),
            ));
        }
        return Err(e);
    }
    Ok(f)
}

/// The extension of journal files under the store root (`journal-<partition>.jnl`).
const JOURNAL_EXT: &str = "jnl";

impl Journal {
    /// Creates the journal file — never over an existing one, whose entries may not have
    /// been replayed ([`prepare`] removes them) — pre-allocated so that overwriting it
    /// changes no metadata, and starts `generation` in it.
    fn create(root: &Path, path: &Path, generation: u64) -> io::Result<Journal> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "journal {}: {e} (is this partition open twice?)",
                        path.display()
                    ),
                )
            })?;
        preallocate(&file, STORE_JOURNAL_BYTES)?;
        let mut j = Journal {
            file,
            capacity: STORE_JOURNAL_BYTES,
            generation,
            pos: 0,
            unsynced: Default::default(),
            new_dirs: Default::default(),
            needs_checkpoint: false,
            buf: Vec::new(),
        };
        j.restart(generation)?;
        fsync_dir(root)?;
        Ok(j)
    }

    /// Writes the header of `generation` and syncs it: from here on only entries of this
    /// generation are replayed.
    fn restart(&mut self, generation: u64) -> io::Result<()> {
        let mut header = Vec::new();
        journal::encode_header(generation, &mut header);
        self.file.write_all_at(&header, 0)?;
        self.file.sync_data()?;
        self.generation = generation;
        self.pos = header.len() as u64;
        Ok(())
    }
}

/// Allocates `len` bytes of `file` on disk (not a sparse hole).
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate on a descriptor we own, with a valid range.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        // File systems without fallocate: extend with zeros.
        file.set_len(len)?;
        return file.sync_all();
    }
    Err(e)
}

/// Redoes the current generation's journal entries into the segment files and syncs them;
/// returns how many entries were redone.
fn replay_journal(root: &Path, path: &Path) -> io::Result<usize> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let data = map(&file, len)?;
    let (_, redo) = journal::replay(&data);
    let mut files: HashMap<SegmentRef, File> = HashMap::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for r in &redo {
        if let std::collections::hash_map::Entry::Vacant(slot) = files.entry(r.segment) {
            let dir = seg_dir(root, r.segment.recipient);
            if !dir.exists() {
                fs::create_dir_all(&dir)?;
                dirs.extend(dir.parent().map(Path::to_path_buf));
                dirs.push(root.to_path_buf());
            }
            dirs.push(dir);
            slot.insert(
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(seg_path(root, r.segment))?,
            );
        }
        if let Some(f) = files.get(&r.segment) {
            f.write_all_at(r.data, r.offset)?;
        }
    }
    let list: Vec<&File> = files.values().collect();
    sync_all_data(&list)?;
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        fsync_dir(&d)?;
    }
    Ok(redo.len())
}

/// Scans one segment file at start: a newer format refuses the open, an empty or
/// never-durable file is removed, a torn tail is cut before the file is mapped, and the
/// valid records go to the bookkeeping (a segment it cannot use is reported and skipped).
fn recover_file(
    core: &mut Store,
    report: &mut RecoveryReport,
    key: RecipientKey,
    seq: u64,
    path: &Path,
) -> io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    report.segments += 1;
    report.bytes += len;
    let valid_len = {
        let data = map(&file, len)?;
        let r = scan(&data, |_, _| {});
        if let Tail::NewerVersion { at, version } = r.tail {
            // Cutting or rewriting it would destroy what a newer imrelay stored.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: record format version {version} at byte {at} is newer than this \
                     imrelay ({}); run the newer version",
                    path.display(),
                    crate::store::record::VERSION
                ),
            ));
        }
        report.records += r.records;
        report.corrupt += r.corrupt_count;
        if matches!(r.tail, Tail::Torn { .. } | Tail::Zeroes { .. }) {
            report.torn_tails += 1;
        }
        r.valid_len as u64
    };
    if valid_len == 0 {
        // A segment created by a batch that never became durable (a crash between creating
        // the file and syncing its first bytes): nothing in it was ever acknowledged.
        drop(file);
        fs::remove_file(path)?;
        if let Some(dir) = path.parent() {
            fsync_dir(dir)?;
        }
        report.torn_tails += 1;
        report.truncated_bytes += len;
        return Ok(());
    }
    if valid_len < len {
        // Cut the torn tail before anything maps the file for reading.
        file.set_len(valid_len)?;
        file.sync_data()?;
        report.truncated_bytes += len - valid_len;
    }
    let data = map(&file, valid_len)?;
    if let Err(e) = core.recover_segment(key, seq, &data) {
        // Unusable as a whole (no record names its recipient, or another one does): reported
        // and left in place for `imrelay store verify`; the rest of the store is served.
        tracing::error!(segment = %path.display(), error = %e, "store segment skipped");
        report.corrupt += 1;
        core.skip_segment(key, seq);
    }
    Ok(())
}

/// `fdatasync` of every file, concurrently when there are several (at most
/// [`SYNC_THREADS_MAX`] at a time); the first error wins.
fn sync_all_data(files: &[&File]) -> io::Result<()> {
    if files.len() <= 1 {
        return files.iter().try_for_each(|f| f.sync_data());
    }
    for group in files.chunks(SYNC_THREADS_MAX) {
        std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(group.len());
            let mut first_err = None;
            for f in group {
                match std::thread::Builder::new().spawn_scoped(scope, move || f.sync_data()) {
                    Ok(h) => handles.push(h),
                    // No thread to spare: sync this one here.
                    Err(_) => {
                        if let Err(e) = f.sync_data() {
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
            for h in handles {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("sync thread panicked")));
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        })?;
    }
    Ok(())
}

/// Most `fdatasync`s one batch runs at once.
const SYNC_THREADS_MAX: usize = 64;

fn fsync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Which recipients a store serves: those whose key falls to partition `index` of `count`
/// (`store::shard_of_key`). A server runs one partition per shard; tools open the whole store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: usize,
    pub count: usize,
}

impl Partition {
    /// Every recipient.
    pub const WHOLE: Partition = Partition { index: 0, count: 1 };

    fn holds(self, key: RecipientKey) -> bool {
        crate::store::shard_of_key(key, self.count) == self.index
    }
}

/// The store's files held for as long as it is open: its lock, and what replaying the
/// journals found. Made by [`prepare`] before any partition is opened.
pub struct Prepared {
    lock: File,
    /// Journal entries redone into segment files.
    pub journal_entries: usize,
}

/// Takes the store's lock and makes every journal left by the last run (of any number of
/// partitions) durable in the segment files, then removes the journals: after this every
/// segment file says all there is, and partitions may be opened in any number.
pub fn prepare(state_dir: &Path) -> io::Result<Prepared> {
    let root = state_dir.join("store");
    fs::create_dir_all(&root)?;
    let lock = lock_store(&root)?;
    let mut journal_entries = 0;
    let mut journals: Vec<PathBuf> = read_dir_sorted(&root)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == JOURNAL_EXT))
        .collect();
    journals.sort();
    for path in &journals {
        journal_entries += replay_journal(&root, path)?;
    }
    // Only once every replayed byte is synced (replay_journal syncs) may the journals go; a
    // crash before this point replays them again, which rewrites the same bytes.
    for path in &journals {
        fs::remove_file(path)?;
    }
    if !journals.is_empty() {
        fsync_dir(&root)?;
    }
    Ok(Prepared {
        lock,
        journal_entries,
    })
}

/// One unit of blocking work for the store's files: cut back the files of failed batches,
/// write and sync a batch, delete reclaimed segments — in that order. A driver takes it from
/// [`FsStore::next_job`], runs it with [`Files::run`] (on any thread), and hands the outcome
/// to [`FsStore::finish_job`].
#[derive(Debug)]
pub struct Job {
    /// Segments to truncate to a durable length (0: remove the file).
    cuts: Vec<(SegmentRef, u64)>,
    batch: Option<IoBatch>,
    deletes: Vec<SegmentRef>,
}

impl Job {
    /// Whether the job carries a batch (appends waiting for it).
    pub fn has_batch(&self) -> bool {
        self.batch.is_some()
    }
}

/// What running a [`Job`] did.
#[derive(Debug)]
pub struct JobDone {
    /// The batch's id, the segments it wrote, and whether it is durable.
    batch: Option<(u64, Vec<SegmentRef>, Result<(), String>)>,
    cuts_left: Vec<(SegmentRef, u64)>,
    deletes_left: Vec<SegmentRef>,
}

impl JobDone {
    /// Whether the job's batch failed (its appends are refused).
    pub fn batch_failed(&self) -> bool {
        matches!(&self.batch, Some((_, _, Err(_))))
    }
}

/// The store's open files and its journal: the part of a store that blocks. It moves to
/// whichever thread runs a job and back.
pub struct Files {
    root: PathBuf,
    files: HashMap<SegmentRef, Arc<File>>,
    journal: Journal,
    /// Started at the first batch that writes several files.
    writer: Option<SegmentWriter>,
}

/// A batch writing at least this many files has its segment writes done on the segment
/// writer thread, beside the journal's sync; below it the hand-off costs more than it saves.
const SEGMENT_WRITER_MIN_FILES: usize = 4;

fn write_segments(writes: &[crate::store::core::FileWrite], files: &[Arc<File>]) -> io::Result<()> {
    writes
        .iter()
        .zip(files)
        .try_for_each(|(w, f)| f.write_all_at(&w.bytes, w.offset))
}

type SegmentWork = (Vec<crate::store::core::FileWrite>, Vec<Arc<File>>);

/// A thread that writes a batch's segment bytes (to the page cache; nothing is synced
/// there) while the batch's journal entry is synced. It ends when its `Files` is dropped.
struct SegmentWriter {
    work: crossbeam::channel::Sender<SegmentWork>,
    done: crossbeam::channel::Receiver<io::Result<()>>,
}

/// A batch's segment writes under way; [`Pending::wait`] for their outcome.
struct Pending(crossbeam::channel::Receiver<io::Result<()>>);

impl Pending {
    fn wait(&self) -> io::Result<()> {
        self.0
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("segment writer thread ended")))
    }
}

impl SegmentWriter {
    fn start() -> SegmentWriter {
        let (work, rx) = crossbeam::channel::bounded::<SegmentWork>(1);
        let (tx, done) = crossbeam::channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("imrelay-segments".into())
            .spawn(move || {
                while let Ok((writes, files)) = rx.recv() {
                    if tx.send(write_segments(&writes, &files)).is_err() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            // Without the thread, `submit` reports the failure and the batch fails cleanly.
            tracing::error!(error = %e, "cannot start the segment writer thread");
        }
        SegmentWriter { work, done }
    }

    /// Hands the writes over; the answer comes through the returned [`Pending`]. When the
    /// thread is not running, the work comes back.
    fn submit(
        &self,
        writes: Vec<crate::store::core::FileWrite>,
        files: Vec<Arc<File>>,
    ) -> Result<Pending, SegmentWork> {
        self.work
            .send((writes, files))
            .map(|()| Pending(self.done.clone()))
            .map_err(|crossbeam::channel::SendError(work)| work)
    }
}

impl Files {
    /// Runs a job: cuts first (nothing is written while a rollback is unfinished: its cut
    /// would later destroy newer data), a checkpoint if a failed batch left entries in the
    /// journal, the batch, then deletions (after a checkpoint) when the cuts and the batch
    /// succeeded.
    pub fn run(&mut self, job: Job) -> JobDone {
        let mut cuts = job.cuts;
        let ready = self.cut(&mut cuts).and_then(|()| {
            if self.journal.needs_checkpoint {
                self.checkpoint()
            } else {
                Ok(())
            }
        });
        let batch = job.batch.map(|b| {
            let mut segs: Vec<SegmentRef> = b.writes.iter().map(|w| w.segment).collect();
            segs.dedup();
            let result = ready.and_then(|()| self.run_batch(b.writes));
            if result.is_err() {
                // None of its entries may ever be replayed: a new generation first.
                self.journal.needs_checkpoint = true;
            }
            (b.id, segs, result.map_err(|e| e.to_string()))
        });
        let mut deletes = job.deletes;
        // Deleting checkpoints first, which would sync the bytes of a failed batch (or of a
        // rollback not done yet) into the segments: only after a clean job.
        let clean = cuts.is_empty() && !matches!(&batch, Some((_, _, Err(_))));
        if clean && !deletes.is_empty() {
            if let Err(e) = self.delete(&mut deletes) {
                tracing::warn!(error = %e, "store segments not deleted yet");
            }
        }
        JobDone {
            batch,
            cuts_left: cuts,
            deletes_left: deletes,
        }
    }

    /// Makes one batch durable: its bytes go to the segment files (not synced) and, as
    /// entries, to the journal, which alone is synced — one `fdatasync` per batch whatever the
    /// number of recipients. A batch too large for the journal is synced file by file instead.
    ///
    /// When the batch writes several files, their writes run on the segment writer thread
    /// while this one writes and syncs the journal (the page-cache copies and the device
    /// flush overlap); the batch is done when both are.
    fn run_batch(&mut self, writes: Vec<crate::store::core::FileWrite>) -> io::Result<()> {
        let mut targets: Vec<Arc<File>> = Vec::with_capacity(writes.len());
        for w in &writes {
            if w.offset == 0 {
                let dir = seg_dir(&self.root, w.segment.recipient);
                if !dir.exists() {
                    fs::create_dir_all(&dir)?;
                    if let Some(fan) = dir.parent() {
                        self.journal.new_dirs.insert(fan.to_path_buf());
                    }
                    self.journal.new_dirs.insert(self.root.clone());
                }
                // Never over an existing file: a new segment's number is above every file
                // on disk, and a failed batch's new files are deleted before the next write.
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(seg_path(&self.root, w.segment))?;
                self.keep_file(w.segment, f);
                self.journal.new_dirs.insert(dir);
            }
            targets.push(Arc::clone(self.file(w.segment)?));
            self.journal.unsynced.insert(w.segment);
        }

        let capacity = self.journal.capacity;
        let room = capacity - journal::header_len() as u64;
        let mut buf = std::mem::take(&mut self.journal.buf);
        let result = self.write_batch(writes, targets, &mut buf, room, capacity);
        self.journal.buf = buf;
        result
    }

    /// The rest of [`Files::run_batch`]: the journal entry and the segment writes, in an
    /// order that never leaves a refused batch replayable.
    fn write_batch(
        &mut self,
        writes: Vec<crate::store::core::FileWrite>,
        targets: Vec<Arc<File>>,
        buf: &mut Vec<u8>,
        room: u64,
        capacity: u64,
    ) -> io::Result<()> {
        let encode = |generation: u64, buf: &mut Vec<u8>| {
            buf.clear();
            journal::encode_entries(generation, &writes, buf)
                .map(|n| n as u64)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
        };
        let mut len = encode(self.journal.generation, buf)?;
        if len > room {
            // Larger than the whole journal: written, then made durable the direct way.
            write_segments(&writes, &targets)?;
            return self.checkpoint();
        }
        if self.journal.pos + len > capacity {
            // The journal is full: sync what it protects, start a new generation, and stamp
            // this batch's entries with it (entries of the old one would never be replayed).
            self.checkpoint()?;
            // The checkpoint synced these files before this batch's bytes were in them:
            // they stay to be synced by the next one.
            self.journal
                .unsynced
                .extend(writes.iter().map(|w| w.segment));
            len = encode(self.journal.generation, buf)?;
        }
        // The segment writes: here, or on the writer thread while the journal is synced.
        let mut pending: Option<Pending> = None;
        if writes.len() >= SEGMENT_WRITER_MIN_FILES {
            let writer = self.writer.get_or_insert_with(SegmentWriter::start);
            match writer.submit(writes, targets) {
                Ok(p) => pending = Some(p),
                Err((writes, targets)) => {
                    // The thread is gone (or never started): write here, and start a new
                    // one next time.
                    tracing::warn!("segment writer thread unavailable; writing in place");
                    self.writer = None;
                    write_segments(&writes, &targets)?;
                }
            }
        } else {
            // A failed write stops the batch before its journal entry exists.
            write_segments(&writes, &targets)?;
        }
        let at = self.journal.pos;
        let journal = self
            .journal
            .file
            .write_all_at(buf, at)
            .and_then(|()| self.journal.file.sync_data());
        // Never return while the writer may still be writing: a failed batch is cut next.
        let segments = pending.map_or(Ok(()), |p| p.wait());
        match journal.and(segments) {
            Ok(()) => {
                self.journal.pos += len;
                Ok(())
            }
            Err(e) => {
                // The entry may be durable although the batch is refused: make it
                // unreplayable (replay stops at the first entry that does not verify).
                // Should this fail too, the next job checkpoints (a new generation) before
                // writing anything.
                let _ = self
                    .journal
                    .file
                    .write_all_at(&[0u8; 64], at)
                    .and_then(|()| self.journal.file.sync_data());
                Err(e)
            }
        }
    }

    /// Syncs every segment written since the last checkpoint (in parallel) and the
    /// directories of new ones, then starts a new journal generation.
    fn checkpoint(&mut self) -> io::Result<()> {
        // Until this succeeds, no batch may write: the next one checkpoints again first.
        self.journal.needs_checkpoint = true;
        let segs: Vec<SegmentRef> = self.journal.unsynced.iter().copied().collect();
        // A group at a time, so that the handles held at once stay bounded.
        for group in segs.chunks(SYNC_THREADS_MAX) {
            let mut handles: Vec<Arc<File>> = Vec::with_capacity(group.len());
            for &seg in group {
                // A segment reclaimed since it was written needs no sync.
                if seg_path(&self.root, seg).exists() {
                    handles.push(Arc::clone(self.file(seg)?));
                }
            }
            let refs: Vec<&File> = handles.iter().map(|f| &**f).collect();
            sync_all_data(&refs)?;
        }
        for d in &self.journal.new_dirs {
            if d.exists() {
                fsync_dir(d)?;
            }
        }
        self.journal.restart(self.journal.generation + 1)?;
        self.journal.unsynced.clear();
        self.journal.new_dirs.clear();
        self.journal.needs_checkpoint = false;
        Ok(())
    }

    /// The open handle of a segment. At most [`STORE_OPEN_FILES_MAX`] stay open: past it
    /// half are closed (a batch in progress holds its own references), so the number of
    /// descriptors does not grow with the number of recipients.
    fn file(&mut self, seg: SegmentRef) -> io::Result<&Arc<File>> {
        if !self.files.contains_key(&seg) {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(seg_path(&self.root, seg))?;
            self.keep_file(seg, f);
        }
        self.files
            .get(&seg)
            .ok_or_else(|| io::Error::other("segment file vanished"))
    }

    fn keep_file(&mut self, seg: SegmentRef, f: File) {
        if self.files.len() >= STORE_OPEN_FILES_MAX {
            let close: Vec<SegmentRef> = self
                .files
                .keys()
                .take(STORE_OPEN_FILES_MAX / 2)
                .copied()
                .collect();
            for k in close {
                self.files.remove(&k);
            }
        }
        self.files.insert(seg, Arc::new(f));
    }

    /// Truncates files of failed batches back to their durable length; what is done leaves
    /// `cuts`.
    fn cut(&mut self, cuts: &mut Vec<(SegmentRef, u64)>) -> io::Result<()> {
        while let Some(&(seg, len)) = cuts.last() {
            if len == 0 {
                self.files.remove(&seg);
                match fs::remove_file(seg_path(&self.root, seg)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            } else {
                let f = self.file(seg)?;
                f.set_len(len)?;
                f.sync_data()?;
            }
            cuts.pop();
        }
        Ok(())
    }

    /// Deletes segments the bookkeeping has emptied; what is done leaves `segs`. A
    /// checkpoint comes first: until then the journal may hold entries for such a segment,
    /// and replaying them after a crash would bring a deleted segment back in pieces.
    fn delete(&mut self, segs: &mut Vec<SegmentRef>) -> io::Result<()> {
        self.checkpoint()?;
        while let Some(&seg) = segs.last() {
            self.files.remove(&seg);
            match fs::remove_file(seg_path(&self.root, seg)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            segs.pop();
        }
        Ok(())
    }
}

impl FsStore {
    /// Opens (creating if needed) the whole store under `state_dir/store` and recovers it:
    /// what the admin commands, tools and tests use.
    pub fn open(
        state_dir: &Path,
        policy: Policy,
        seed: u64,
    ) -> io::Result<(FsStore, RecoveryReport)> {
        let prepared = prepare(state_dir)?;
        let (mut store, mut report) =
            FsStore::open_partition(state_dir, &prepared, Partition::WHOLE, policy, seed)?;
        report.journal_entries = prepared.journal_entries;
        store._lock = Some(prepared.lock);
        Ok((store, report))
    }

    /// Opens one partition of a [`prepare`]d store and recovers its recipients' segments;
    /// the partition writes its own journal (`journal-<index>.jnl`). The caller keeps
    /// `prepared` (the store's lock) for as long as any partition is open.
    pub fn open_partition(
        state_dir: &Path,
        _prepared: &Prepared,
        part: Partition,
        policy: Policy,
        seed: u64,
    ) -> io::Result<(FsStore, RecoveryReport)> {
        let started = Instant::now();
        let root = state_dir.join("store");
        let mut core = Store::new(policy, seed);
        let mut report = RecoveryReport::default();
        for (key, segs) in list_segments(&root)? {
            if !part.holds(key) {
                continue;
            }
            for (seq, path) in segs {
                recover_file(&mut core, &mut report, key, seq, &path)?;
            }
        }
        core.finish_recovery();
        let journal_path = root.join(format!("journal-{}.{JOURNAL_EXT}", part.index));
        let journal = Journal::create(&root, &journal_path, 1)?;
        let mut store = FsStore {
            root: root.clone(),
            core,
            maps: HashMap::new(),
            files: Some(Files {
                root,
                files: HashMap::new(),
                journal,
                writer: None,
            }),
            dirty: Vec::new(),
            to_delete: Vec::new(),
            _lock: None,
        };
        // Segments recovery found dead go now.
        store.commit();
        report.pending_messages = store.core.recipients().map(|(_, n, _)| n as usize).sum();
        report.elapsed = started.elapsed();
        Ok((store, report))
    }

    pub fn core(&self) -> &Store {
        &self.core
    }

    /// Queues a message; it is durable (and acknowledged) once a job carrying it has run
    /// (at the next [`FsStore::commit`], for a synchronous driver).
    pub fn submit(
        &mut self,
        now_ms: u64,
        aor: &[u8],
        sender: &[u8],
        content_type: &[u8],
        body: &[u8],
        retention_ms: Option<u64>,
    ) -> Result<Ticket, StoreError> {
        self.core
            .append_message(now_ms, aor, sender, content_type, body, retention_ms)
    }

    /// The store's bookkeeping, to change (uploads of chunked messages, see
    /// [`Store::begin_upload`]); what it queues is written by the next job.
    pub fn core_mut(&mut self) -> &mut Store {
        &mut self.core
    }

    /// Stores one message durably and returns its id.
    pub fn append(
        &mut self,
        now_ms: u64,
        aor: &[u8],
        sender: &[u8],
        content_type: &[u8],
        body: &[u8],
        retention_ms: Option<u64>,
    ) -> Result<MessageId, StoreError> {
        let t = self.submit(now_ms, aor, sender, content_type, body, retention_ms)?;
        let acks = self.commit();
        acks.into_iter()
            .find(|a| a.ticket == t)
            .map_or(Err(StoreError::Io("append lost".into())), |a| a.result)
    }

    /// Marks a message delivered; the mark becomes durable with the next job's batch.
    pub fn mark_delivered(
        &mut self,
        now_ms: u64,
        aor: &[u8],
        id: MessageId,
    ) -> Result<(), StoreError> {
        self.core.mark_delivered(aor, id, now_ms)
    }

    /// Removes a message its recipient refused for good; durable with the next job's batch.
    pub fn discard(&mut self, now_ms: u64, aor: &[u8], id: MessageId) -> Result<(), StoreError> {
        self.core.discard(aor, id, now_ms)
    }

    /// Marks a message delivered and makes the mark durable.
    pub fn deliver(&mut self, now_ms: u64, aor: &[u8], id: MessageId) -> Result<(), StoreError> {
        self.core.mark_delivered(aor, id, now_ms)?;
        self.commit();
        Ok(())
    }

    /// Expires due messages and compacts (see [`FsStore::upkeep`]), then makes the marks and
    /// copies durable; returns how many messages expired.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let n = self.upkeep(now_ms);
        self.commit();
        n
    }

    /// Periodic upkeep without I/O of its own: expires due messages (and aborts idle
    /// uploads), and copies the live messages of one mostly dead segment forward; the marks
    /// and copies are queued for the next job. Returns how many messages expired.
    pub fn upkeep(&mut self, now_ms: u64) -> usize {
        let n = self.core.expire(now_ms);
        if let Err(e) = self.compact(now_ms) {
            // The messages stay where they are; the segment is tried again next time.
            tracing::warn!(error = %e, "store compaction skipped");
        }
        n
    }

    /// Copies the live messages of one mostly dead segment forward (durable with the next
    /// batch, after which the segment is deleted); returns how many were moved.
    pub fn compact(&mut self, now_ms: u64) -> Result<usize, StoreError> {
        let Some(seg) = self.core.compaction_candidate() else {
            return Ok(0);
        };
        // A chunked message may have pieces in any of the recipient's segments.
        let mut maps: HashMap<u64, Arc<MapOrEmpty>> = HashMap::new();
        for (s, durable) in self.core.segments_of(seg.recipient) {
            maps.insert(s.seq, self.ensure_map(s, durable)?);
        }
        let read = |seq: u64, offset: u64, len: u32| {
            let m = maps.get(&seq)?;
            m.get(offset as usize..(offset as usize).checked_add(len as usize)?)
        };
        self.core.compact(seg, now_ms, read)
    }

    /// The records the next compaction would read (every live message of the candidate
    /// segment), so that a shard can fault them in off its thread first.
    pub fn compaction_records(&mut self) -> Option<Pages> {
        let seg = self.core.compaction_candidate()?;
        let aor = self.core.aor_of(seg.recipient)?.to_vec();
        let ids: Vec<MessageId> = self
            .core
            .pending(&aor)
            .filter(|e| e.segments().contains(&seg.seq))
            .map(|e| e.id)
            .collect();
        let mut all = Vec::new();
        for id in ids {
            all.extend(self.records(&aor, id).ok()?.0);
        }
        Some(Pages(all))
    }

    /// The next unit of blocking work, if there is any and no job is out: the files of
    /// failed batches to cut back, the open batch, and reclaimed segments to delete. Maps of
    /// segments about to be cut or deleted are dropped first (a file never shrinks under a
    /// map this store made).
    pub fn next_job(&mut self) -> Option<Job> {
        self.files.as_ref()?;
        while let Some(seg) = self.core.poll_reclaim() {
            self.to_delete.push(seg);
        }
        let cuts: Vec<(SegmentRef, u64)> = self
            .dirty
            .iter()
            .map(|&s| (s, self.core.durable_len(s).unwrap_or(0)))
            .collect();
        let batch = self.core.poll_batch();
        if batch.is_none() && cuts.is_empty() && self.to_delete.is_empty() {
            return None;
        }
        for (seg, _) in &cuts {
            self.maps.remove(seg);
        }
        for seg in &self.to_delete {
            self.maps.remove(seg);
        }
        Some(Job {
            cuts,
            batch,
            deletes: std::mem::take(&mut self.to_delete),
        })
    }

    /// Takes the files to run a job elsewhere; [`FsStore::finish_job`] gives them back.
    pub fn take_files(&mut self) -> Option<Files> {
        self.files.take()
    }

    /// Takes back the files and the outcome of a job.
    pub fn finish_job(&mut self, files: Files, done: JobDone) {
        self.files = Some(files);
        self.dirty = done.cuts_left.into_iter().map(|(s, _)| s).collect();
        self.to_delete.extend(done.deletes_left);
        if let Some((id, segs, result)) = done.batch {
            if result.is_err() {
                for s in segs {
                    if !self.dirty.contains(&s) {
                        self.dirty.push(s);
                    }
                }
            }
            self.core.on_batch_done(id, result);
        }
    }

    /// The next finished append.
    pub fn poll_ack(&mut self) -> Option<Ack> {
        self.core.poll_ack()
    }

    /// Runs every job there is, here (group commit: everything queued goes in one batch),
    /// and returns the acknowledgements.
    pub fn commit(&mut self) -> Vec<Ack> {
        while let Some(job) = self.next_job() {
            let had_batch = job.has_batch();
            let Some(mut files) = self.take_files() else {
                break;
            };
            let done = files.run(job);
            self.finish_job(files, done);
            if !had_batch {
                // Only cuts or deletions: one attempt per commit (they are retried later).
                break;
            }
        }
        let mut acks = Vec::new();
        while let Some(a) = self.core.poll_ack() {
            acks.push(a);
        }
        acks
    }

    /// Calls `f` with the stored message's metadata and body, read through memory maps of
    /// the durable parts of its segments. A whole message's body is a slice of the map; a
    /// chunked message's pieces are gathered into one buffer first.
    pub fn with_message<R>(
        &mut self,
        aor: &[u8],
        id: MessageId,
        f: impl FnOnce(&Meta<'_>, &[u8]) -> R,
    ) -> Result<R, StoreError> {
        let m = self.message(aor, id)?;
        let meta = Meta {
            id: m.id,
            stored_at_ms: m.stored_at_ms,
            expires_at_ms: m.expires_at_ms,
            total_len: m.body.len() as u64,
            sender: &m.sender,
            recipient: aor,
            content_type: &m.content_type,
        };
        Ok(match m.body.0.as_slice() {
            [] => f(&meta, &[]),
            [(map, range)] => f(&meta, &map[range.clone()]),
            _ => f(&meta, &m.body.slices().collect::<Vec<&[u8]>>().concat()),
        })
    }

    /// A stored message: its metadata, and its body as slices of read-only maps of the
    /// segments' durable prefixes (no copy: a sender writes them to the network as they
    /// are). Every record is verified as it is found.
    pub fn message(&mut self, aor: &[u8], id: MessageId) -> Result<StoredMessage, StoreError> {
        let entry = self
            .core
            .find(aor, id)
            .cloned()
            .ok_or(StoreError::UnknownMessage)?;
        let key = RecipientKey::of(aor);
        let seg = |seq| SegmentRef {
            recipient: key,
            seq,
        };
        let head_map = self.ensure_map(
            seg(entry.segment),
            entry.offset + u64::from(entry.record_len),
        )?;
        let mut chunk_maps = Vec::with_capacity(entry.chunks.len());
        for c in &entry.chunks {
            chunk_maps.push(self.ensure_map(seg(c.segment), c.offset + u64::from(c.record_len))?);
        }
        let lost = || StoreError::Io(format!("a piece of {id} is not where it was stored"));
        let head = record_at(&head_map, entry.offset, id)?;
        let (meta, body) = match head {
            Record::Message { meta, body } if meta.id == id => (meta, Some(body)),
            Record::Begin { meta } if meta.id == id => (meta, None),
            _ => {
                return Err(StoreError::Io(format!(
                    "record of {id} is not that message"
                )))
            }
        };
        let mut parts = Vec::with_capacity(entry.chunks.len().max(1));
        if let Some(body) = body {
            parts.push((Arc::clone(&head_map), range_in(&head_map, body)));
        }
        for (c, m) in entry.chunks.iter().zip(chunk_maps) {
            let range = match record_at(&m, c.offset, id)? {
                Record::Chunk {
                    id: cid,
                    offset,
                    data,
                } if cid == id && offset == c.body_offset => range_in(&m, data),
                _ => return Err(lost()),
            };
            parts.push((m, range));
        }
        Ok(StoredMessage {
            id,
            stored_at_ms: meta.stored_at_ms,
            expires_at_ms: meta.expires_at_ms,
            sender: meta.sender.to_vec(),
            content_type: meta.content_type.to_vec(),
            body: Pages(parts),
        })
    }

    /// What a list of waiting messages says of one, read from its first record only (a
    /// large message's body pages are not touched); `head_pages` is that record, for a
    /// reader to prefetch first.
    pub fn summary(&mut self, aor: &[u8], id: MessageId) -> Result<Summary, StoreError> {
        let (entry, map) = self.head_map(aor, id)?;
        let meta = match record_at(&map, entry.offset, id)? {
            Record::Message { meta, .. } | Record::Begin { meta } if meta.id == id => meta,
            _ => {
                return Err(StoreError::Io(format!(
                    "record of {id} is not that message"
                )))
            }
        };
        Ok(Summary {
            id,
            stored_at_ms: meta.stored_at_ms,
            expires_at_ms: meta.expires_at_ms,
            size: entry.body_len,
            sender: meta.sender.to_vec(),
            content_type: meta.content_type.to_vec(),
            session: entry.commit_segment.is_some(),
        })
    }

    /// The first record of a stored message, not read yet (see [`FsStore::summary`]).
    pub fn head_pages(&mut self, aor: &[u8], id: MessageId) -> Result<Pages, StoreError> {
        let (entry, map) = self.head_map(aor, id)?;
        let end = entry.offset + u64::from(entry.record_len);
        Ok(Pages(vec![(map, entry.offset as usize..end as usize)]))
    }

    /// A pending message's entry and a map covering its first record.
    fn head_map(
        &mut self,
        aor: &[u8],
        id: MessageId,
    ) -> Result<(crate::store::core::Entry, Arc<MapOrEmpty>), StoreError> {
        let entry = self
            .core
            .find(aor, id)
            .cloned()
            .ok_or(StoreError::UnknownMessage)?;
        let seg = SegmentRef {
            recipient: RecipientKey::of(aor),
            seq: entry.segment,
        };
        let map = self.ensure_map(seg, entry.offset + u64::from(entry.record_len))?;
        Ok((entry, map))
    }

    /// The records of a stored message as they lie in the maps, not read yet (nothing is
    /// verified, so no page is touched): what a reader prefetches before [`FsStore::message`]
    /// reads and verifies them.
    pub fn records(&mut self, aor: &[u8], id: MessageId) -> Result<Pages, StoreError> {
        let entry = self
            .core
            .find(aor, id)
            .cloned()
            .ok_or(StoreError::UnknownMessage)?;
        let key = RecipientKey::of(aor);
        let places = std::iter::once((entry.segment, entry.offset, entry.record_len)).chain(
            entry
                .chunks
                .iter()
                .map(|c| (c.segment, c.offset, c.record_len)),
        );
        let mut out = Vec::with_capacity(entry.chunks.len() + 1);
        for (seq, offset, len) in places {
            let seg = SegmentRef {
                recipient: key,
                seq,
            };
            let end = offset + u64::from(len);
            out.push((self.ensure_map(seg, end)?, offset as usize..end as usize));
        }
        Ok(Pages(out))
    }

    /// A map of the segment covering at least `end` (within its durable length), kept for
    /// later reads. At most [`STORE_MAPS_MAX`] are kept: past it half are dropped (a
    /// message handed out keeps the maps it uses).
    fn ensure_map(&mut self, seg: SegmentRef, end: u64) -> Result<Arc<MapOrEmpty>, StoreError> {
        let durable = self
            .core
            .durable_len(seg)
            .ok_or(StoreError::UnknownMessage)?;
        if end > durable {
            return Err(StoreError::Io("record lies past the durable end".into()));
        }
        if let Some(m) = self.maps.get(&seg).filter(|m| m.len() as u64 >= end) {
            return Ok(Arc::clone(m));
        }
        let io = |e: io::Error| StoreError::Io(e.to_string());
        let file = File::open(seg_path(&self.root, seg)).map_err(io)?;
        let m = Arc::new(map(&file, durable).map_err(io)?);
        if self.maps.len() >= STORE_MAPS_MAX {
            let drop_these: Vec<SegmentRef> =
                self.maps.keys().take(STORE_MAPS_MAX / 2).copied().collect();
            for k in drop_these {
                self.maps.remove(&k);
            }
        }
        self.maps.insert(seg, Arc::clone(&m));
        Ok(m)
    }
}

/// The verified record at `offset` of a map.
fn record_at(map: &MapOrEmpty, offset: u64, id: MessageId) -> Result<Record<'_>, StoreError> {
    map.get(offset as usize..)
        .and_then(|b| decode(b).ok())
        .map(|(r, _)| r)
        .ok_or_else(|| StoreError::Io(format!("record of {id} does not verify")))
}

/// Where `part` (a slice of `map`) lies in it.
fn range_in(map: &MapOrEmpty, part: &[u8]) -> std::ops::Range<usize> {
    let start = part.as_ptr() as usize - map.as_ptr() as usize;
    start..start + part.len()
}

/// Ranges of shared read-only maps: a stored message's records or its body.
#[derive(Clone, Default)]
pub struct Pages(Vec<(Arc<MapOrEmpty>, std::ops::Range<usize>)>);

impl Pages {
    pub fn len(&self) -> usize {
        self.0.iter().map(|(_, r)| r.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces in order.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.0.iter().map(|(m, r)| &m[r.clone()])
    }

    /// Asks the kernel to start reading the pages in (`madvise(MADV_WILLNEED)`); it does not
    /// wait for them.
    pub fn prefetch(&self) {
        for (m, r) in &self.0 {
            if let MapOrEmpty::Map(map) = &**m {
                let _ = map.advise_range(memmap2::Advice::WillNeed, r.start, r.len());
            }
        }
    }

    /// Whether every page is in memory (`mincore`): reading them then cannot fault to the
    /// disk.
    pub fn resident(&self) -> bool {
        self.slices().all(resident)
    }

    /// Faults in every page not in memory (`MADV_POPULATE_READ`, one call per range; on a
    /// kernel without it, a read of one byte per page): run it off the shard threads (it
    /// blocks on the disk).
    pub fn touch(&self) {
        let page = page_size();
        for (m, r) in &self.0 {
            let MapOrEmpty::Map(map) = &**m else { continue };
            if map
                .advise_range(memmap2::Advice::PopulateRead, r.start, r.len())
                .is_ok()
            {
                continue;
            }
            let s = &map[r.clone()];
            for i in (0..s.len()).step_by(page) {
                // SAFETY: `i` is within `s`; a volatile read keeps the load from being elided.
                unsafe { std::ptr::read_volatile(s.as_ptr().add(i)) };
            }
        }
    }
}

/// What a list of waiting messages says of one ([`FsStore::summary`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: MessageId,
    pub stored_at_ms: u64,
    pub expires_at_ms: u64,
    /// Body bytes.
    pub size: u64,
    pub sender: Vec<u8>,
    pub content_type: Vec<u8>,
    /// It arrived in session mode (MSRP, stored in chunks) and is delivered so.
    pub session: bool,
}

/// A message read from the store: metadata, and the body as slices of shared read-only
/// maps. It keeps its maps alive; the store never shrinks a file below a durable prefix, so
/// the slices stay valid for as long as it is held.
#[derive(Clone)]
pub struct StoredMessage {
    pub id: MessageId,
    pub stored_at_ms: u64,
    pub expires_at_ms: u64,
    pub sender: Vec<u8>,
    pub content_type: Vec<u8>,
    pub body: Pages,
}

impl std::fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredMessage")
            .field("id", &self.id)
            .field("body_len", &self.body.len())
            .field("parts", &self.body.0.len())
            .finish()
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Whether every page under `s` (a slice of a file map) is resident.
fn resident(s: &[u8]) -> bool {
    if s.is_empty() {
        return true;
    }
    let page = page_size();
    let start = s.as_ptr() as usize & !(page - 1);
    let end = s.as_ptr() as usize + s.len();
    let pages = (end - start).div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: [start, end) lies within one live mapping (page-aligned start, as mincore
    // requires) and `vec` has one byte per page of it.
    let rc = unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
    rc == 0 && vec.iter().all(|b| b & 1 == 1)
}

/// A read-only map of the first `len` bytes of `file` (an empty slice for an empty file).
fn map(file: &File, len: u64) -> io::Result<MapOrEmpty> {
    if len == 0 {
        return Ok(MapOrEmpty::Empty);
    }
    // SAFETY: the store is the only writer of its files; it maps only the durable prefix, which
    // is never rewritten, and never shrinks a file while a map of it exists in this process
    // (truncation happens before mapping, at recovery, and on rollback of bytes beyond the
    // durable prefix).
    let m = unsafe { memmap2::MmapOptions::new().len(len as usize).map(file)? };
    Ok(MapOrEmpty::Map(m))
}

enum MapOrEmpty {
    Empty,
    Map(memmap2::Mmap),
}

impl std::ops::Deref for MapOrEmpty {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            MapOrEmpty::Empty => &[],
            MapOrEmpty::Map(m) => m,
        }
    }
}

/// A recipient's segment files: (sequence, path), ascending.
pub type Segments = Vec<(u64, PathBuf)>;

/// Every segment under `root`, grouped by recipient, in ascending sequence.
pub fn list_segments(root: &Path) -> io::Result<Vec<(RecipientKey, Segments)>> {
    let mut out = Vec::new();
    let mut fan: Vec<PathBuf> = read_dir_sorted(root)?;
    fan.retain(|p| p.is_dir());
    for f in fan {
        for dir in read_dir_sorted(&f)? {
            let Some(key) = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(RecipientKey::from_hex)
            else {
                continue;
            };
            let mut segs: Vec<(u64, PathBuf)> = read_dir_sorted(&dir)?
                .into_iter()
                .filter_map(|p| {
                    let name = p.file_name()?.to_str()?;
                    let seq = u64::from_str_radix(name.strip_suffix(".seg")?, 16).ok()?;
                    Some((seq, p))
                })
                .collect();
            segs.sort();
            if !segs.is_empty() {
                out.push((key, segs));
            }
        }
    }
    Ok(out)
}

fn read_dir_sorted(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// One segment's condition, for `imrelay store verify`.
#[derive(Debug, Clone)]
pub struct SegmentCheck {
    pub path: PathBuf,
    pub len: u64,
    pub records: usize,
    pub corrupt: usize,
    pub tail: Tail,
    /// The header names a recipient whose key is not the directory's.
    pub misfiled: bool,
}

/// Checks every segment without changing anything.
pub fn verify(state_dir: &Path) -> io::Result<Vec<SegmentCheck>> {
    let root = state_dir.join("store");
    let mut out = Vec::new();
    if !root.exists() {
        return Ok(out);
    }
    for (key, segs) in list_segments(&root)? {
        for (_, path) in segs {
            let file = File::open(&path)?;
            let len = file.metadata()?.len();
            let data = map(&file, len)?;
            let mut header: Option<Vec<u8>> = None;
            let r = scan(&data, |off, rec| {
                if let (0, Record::Segment { recipient, .. }) = (off, rec) {
                    header = Some(recipient.to_vec());
                }
            });
            out.push(SegmentCheck {
                path,
                len,
                records: r.records,
                corrupt: r.corrupt_count,
                tail: r.tail,
                misfiled: header.as_deref().map(RecipientKey::of) != Some(key),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
