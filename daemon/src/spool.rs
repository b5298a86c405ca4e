//! The daemon's durable queue: every batch is appended to an on-disk segment before it is
//! published, and a segment is deleted once all its batches are acknowledged.
//!
//! * A daemon killed with `kill -9` loses nothing it had flushed: the next daemon for the
//!   same NATS server adopts its spool directory (the dead daemon's lock is gone) and
//!   delivers it. The `Nats-Msg-Id` dedupe and ingest's sequence check make a batch that
//!   was published but not yet deleted harmless.
//! * Memory stays bounded during long outages: the publisher reads from disk.
//! * The spool has a byte cap; above it the oldest segment is dropped and every dropped
//!   batch is counted per session, so the loss is reported, never silent.
//!
//! * A batch NATS can never take (larger than the server's `max_payload`) is moved aside to
//!   `<root>/refused/<session id>.<seq>.batch` (up to 64 MiB of them) so it cannot hold up
//!   what follows it.
//!
//! * Nothing undelivered is deleted because it could not be read: a segment that fails to
//!   read is tried again later, and after [`READ_ATTEMPTS`] failures renamed to
//!   `<n>.seg.unreadable` (kept, counted) so it cannot hold up what follows it.
//! * A write that fails part-way is cut back off the segment; an entry torn anyway (power
//!   lost mid-write, a damaged disk) is skipped up to the next whole entry, and the bytes
//!   skipped are counted and logged: the entries after it are still delivered.
//! * When data reaches the disk: with `--spool-sync never` (the default) the spool is in
//!   the OS's page cache when a call returns, which survives the daemon or the application
//!   being killed but not the machine losing power; with `--spool-sync always` every append
//!   is also `fdatasync`ed before the call returns (docs/daemon-api.md has the cost).
//!
//! Layout: `<root>/<daemon id>/{lock, meta.json, <n>.seg}`. A segment is a sequence of
//! entries `0xDC, u32 body length, u32 crc32(body), body` with body
//! `u16 id length, session id, u64 seq, u32 record count, batch payload`.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

const MAGIC: u8 = 0xDC;
const HEADER: usize = 9;
/// A segment is sealed once it is this big, so acknowledged data can be deleted.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// The most that batches NATS refused keep of disk under `<root>/refused/`; past it a refused
/// batch is only counted and reported.
const SET_ASIDE_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Reads of a segment that fail in a row before it is set aside as unreadable.
const READ_ATTEMPTS: u32 = 5;

/// When appended batches are forced to the disk (`--spool-sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SpoolSync {
    /// Left to the OS: survives the daemon being killed, not the machine losing power.
    #[default]
    Never,
    /// `fdatasync` after every append, before the call that spooled it returns.
    Always,
}

/// One batch as spooled.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolEntry {
    pub session_id: String,
    pub seq: u64,
    pub records: u32,
    pub payload: Bytes,
}

/// Entries read from one segment, to publish and then [`Spool::commit`].
pub struct Chunk {
    pub entries: Vec<SpoolEntry>,
    source: usize,
    segment: u64,
    end_offset: u64,
}

#[derive(Default)]
pub struct SpoolStats {
    pub pending_bytes: AtomicU64,
    pub dropped_batches: AtomicU64,
    pub dropped_records: AtomicU64,
    pub adopted_dirs: AtomicU64,
    /// Bytes skipped as torn or corrupt entries (their batches are lost).
    pub torn_bytes: AtomicU64,
    /// Reads of a segment that failed (tried again later).
    pub read_errors: AtomicU64,
    /// Segments set aside as unreadable (kept on disk, not delivered).
    pub unreadable_segments: AtomicU64,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    nats_url: String,
    pid: u32,
}

/// A directory of segments, ours or adopted from a dead daemon.
struct Source {
    dir: PathBuf,
    /// Held for as long as we own the directory.
    _lock: File,
    segments: VecDeque<u64>,
    /// Read position in the front segment.
    offset: u64,
    own: bool,
    /// Reads of the front segment that failed in a row.
    read_failures: u32,
}

struct Writer {
    file: File,
    segment: u64,
    /// Bytes of whole entries in the segment (where a failed write is cut back to).
    bytes: u64,
}

struct State {
    /// Adopted directories first, ours last.
    sources: Vec<Source>,
    writer: Writer,
}

pub struct Spool {
    root: PathBuf,
    nats_url: String,
    sync: SpoolSync,
    state: Mutex<State>,
    pub stats: SpoolStats,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016}.seg"))
}

fn open_segment(dir: &Path, segment: u64) -> std::io::Result<File> {
    private(OpenOptions::new().create(true).append(true)).open(segment_path(dir, segment))
}

/// Files the spool creates are its user's alone (0600): they hold what applications logged.
fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}

/// Creates `dir` (and its parents) and makes it its user's alone (0700).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(())
}

/// Writes a whole file, its user's alone.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    private(OpenOptions::new().create(true).write(true).truncate(true))
        .open(path)?
        .write_all(bytes)
}

impl Spool {
    /// Creates this daemon's spool directory under `root`, locked for its lifetime.
    pub fn open(
        root: &Path,
        daemon_id: &str,
        nats_url: &str,
        sync: SpoolSync,
    ) -> std::io::Result<Self> {
        let dir = root.join(daemon_id);
        private_dir(root)?;
        private_dir(&dir)?;
        let lock = private(OpenOptions::new().create(true).truncate(true).write(true))
            .open(dir.join("lock"))?;
        lock.try_lock()
            .map_err(|e| std::io::Error::other(format!("locking {}: {e}", dir.display())))?;
        // Which server the batches are for, without its credentials.
        let nats_url = datacat_jetstream::redacted_url(nats_url);
        let meta = Meta {
            nats_url: nats_url.clone(),
            pid: std::process::id(),
        };
        write_private(&dir.join("meta.json"), &serde_json::to_vec(&meta)?)?;
        let writer = Writer {
            file: open_segment(&dir, 1)?,
            segment: 1,
            bytes: 0,
        };
        let own = Source {
            dir,
            _lock: lock,
            segments: VecDeque::from([1]),
            offset: 0,
            own: true,
            read_failures: 0,
        };
        let spool = Self {
            root: root.to_path_buf(),
            nats_url,
            sync,
            state: Mutex::new(State {
                sources: vec![own],
                writer,
            }),
            stats: SpoolStats::default(),
        };
        spool.adopt_orphans();
        Ok(spool)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn pending_bytes(&self) -> u64 {
        self.stats.pending_bytes.load(Ordering::Relaxed)
    }

    /// Keeps a batch NATS refused in `<root>/refused/`, for a person to look at; returns its
    /// path. Fails once the folder holds [`SET_ASIDE_MAX_BYTES`].
    pub fn set_aside(&self, entry: &SpoolEntry) -> std::io::Result<PathBuf> {
        let dir = self.root.join("refused");
        private_dir(&dir)?;
        let held: u64 = fs::read_dir(&dir)?
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        if held + entry.payload.len() as u64 > SET_ASIDE_MAX_BYTES {
            return Err(std::io::Error::other(format!(
                "{} already holds {held} bytes of refused batches",
                dir.display()
            )));
        }
        let name: String = entry
            .session_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{name}.{}.batch", entry.seq));
        write_private(&path, &entry.payload)?;
        Ok(path)
    }

    /// Takes over the spool directories of dead daemons that published to the same NATS.
    /// Returns how many were adopted.
    pub fn adopt_orphans(&self) -> usize {
        let Ok(dirs) = fs::read_dir(&self.root) else {
            return 0;
        };
        let mut adopted = 0;
        for dir in dirs.flatten().map(|entry| entry.path()) {
            if self.lock().sources.iter().any(|s| s.dir == dir) {
                continue;
            }
            let Some(meta) = fs::read(dir.join("meta.json"))
                .ok()
                .and_then(|m| serde_json::from_slice::<Meta>(&m).ok())
            else {
                continue;
            };
            // (An older daemon wrote the URL whole.)
            if datacat_jetstream::redacted_url(&meta.nats_url) != self.nats_url {
                continue;
            }
            let Ok(lock) = OpenOptions::new().write(true).open(dir.join("lock")) else {
                continue;
            };
            if lock.try_lock().is_err() {
                continue; // Its daemon is alive.
            }
            let mut segments: Vec<u64> = fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
                .collect();
            segments.sort_unstable();
            let bytes: u64 = segments
                .iter()
                .filter_map(|s| fs::metadata(segment_path(&dir, *s)).ok())
                .map(|m| m.len())
                .sum();
            if segments.is_empty() || bytes == 0 {
                remove_spool_dir(&dir);
                continue;
            }
            info!(dir = %dir.display(), dead_pid = meta.pid, bytes, "adopting the spool of a daemon that died");
            self.stats.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
            self.stats.adopted_dirs.fetch_add(1, Ordering::Relaxed);
            let source = Source {
                dir,
                _lock: lock,
                segments: segments.into(),
                offset: 0,
                own: false,
                read_failures: 0,
            };
            let mut state = self.lock();
            let at = state.sources.len() - 1;
            state.sources.insert(at, source);
            adopted += 1;
        }
        adopted
    }

    /// Appends batches (in order) and makes them visible to readers: all of them, or (on an
    /// error) none, the segment cut back to its last whole entry.
    pub fn append(&self, entries: &[SpoolEntry]) -> std::io::Result<()> {
        let mut encoded = Vec::new();
        for entry in entries {
            encode_into(entry, &mut encoded);
        }
        let mut state = self.lock();
        let writer = &mut state.writer;
        let written = writer
            .file
            .write_all(&encoded)
            .and_then(|()| match self.sync {
                SpoolSync::Never => Ok(()),
                SpoolSync::Always => writer.file.sync_data(),
            });
        if let Err(error) = written {
            // A torn entry left behind would cost the entries after it their checksum.
            if let Err(cut) = writer.file.set_len(writer.bytes) {
                warn!(%error, %cut, "a failed spool write could not be cut back; readers skip the torn entry");
            }
            return Err(error);
        }
        writer.bytes += encoded.len() as u64;
        self.stats
            .pending_bytes
            .fetch_add(encoded.len() as u64, Ordering::Relaxed);
        if state.writer.bytes >= SEGMENT_BYTES {
            let next = state.writer.segment + 1;
            let dir = own(&state).dir.clone();
            state.writer = Writer {
                file: open_segment(&dir, next)?,
                segment: next,
                bytes: 0,
            };
            own_mut(&mut state).segments.push_back(next);
        }
        Ok(())
    }

    /// The next entries to publish (at most `max`), oldest first, or `None` when everything
    /// is read. Exhausted segments are deleted on the way.
    pub fn next_chunk(&self, max: usize) -> Option<Chunk> {
        loop {
            let (source, segment, offset, path, active) = {
                let mut state = self.lock();
                let index = state.sources.iter().position(|s| !s.segments.is_empty())?;
                let writer_segment = state.writer.segment;
                let source = &mut state.sources[index];
                let segment = *source.segments.front()?;
                let active = source.own && segment == writer_segment;
                (
                    index,
                    segment,
                    source.offset,
                    segment_path(&source.dir, segment),
                    active,
                )
            };
            let data = match read_from(&path, offset) {
                Ok(data) => {
                    self.lock().sources[source].read_failures = 0;
                    data
                }
                Err(error) => {
                    self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(path = %path.display(), %error, "a spool segment does not read; trying again later");
                    if self.read_failed(source, segment, active) {
                        continue;
                    }
                    return None;
                }
            };
            let decoded = decode_entries(&data, max);
            if decoded.skipped > 0 {
                // (They leave the pending count with the chunk, or with the segment.)
                self.stats
                    .torn_bytes
                    .fetch_add(decoded.skipped as u64, Ordering::Relaxed);
                warn!(path = %path.display(), offset, bytes = decoded.skipped, "torn or corrupt spool entries skipped; the entries after them are delivered");
            }
            if !decoded.entries.is_empty() || (decoded.skipped > 0 && active) {
                return Some(Chunk {
                    entries: decoded.entries,
                    source,
                    segment,
                    end_offset: offset + decoded.used as u64,
                });
            }
            if active {
                return None; // Caught up with the writer.
            }
            let torn = data.len() - decoded.used;
            if torn > 0 {
                // A sealed segment ending in part of an entry: written when its daemon died.
                self.stats
                    .torn_bytes
                    .fetch_add(torn as u64, Ordering::Relaxed);
                warn!(path = %path.display(), bytes = torn, "a spool segment ends in a torn entry; skipped");
            }
            self.finish_segment(source, segment, data.len() as u64);
        }
    }

    /// Counts a failed read of a source's front segment; after [`READ_ATTEMPTS`] in a row a
    /// sealed one is renamed `.unreadable` (kept on disk, never deleted) and reading goes on
    /// with the next. Returns whether it was set aside.
    fn read_failed(&self, source_index: usize, segment: u64, active: bool) -> bool {
        let mut state = self.lock();
        let source = &mut state.sources[source_index];
        source.read_failures += 1;
        if active || source.read_failures < READ_ATTEMPTS {
            return false;
        }
        let path = segment_path(&source.dir, segment);
        let aside = path.with_extension("seg.unreadable");
        let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if let Err(error) = fs::rename(&path, &aside) {
            warn!(path = %path.display(), %error, "an unreadable spool segment could not be set aside either");
        }
        error!(path = %aside.display(), bytes, "a spool segment failed to read {READ_ATTEMPTS} times; set aside, undelivered");
        self.stats
            .unreadable_segments
            .fetch_add(1, Ordering::Relaxed);
        source.segments.pop_front();
        source.offset = 0;
        source.read_failures = 0;
        if !source.own && source.segments.is_empty() {
            state.sources.remove(source_index);
        }
        drop(state);
        self.discount(bytes);
        true
    }

    /// Bytes that left the spool without being delivered.
    fn discount(&self, bytes: u64) {
        self.stats
            .pending_bytes
            .fetch_sub(bytes.min(self.pending_bytes()), Ordering::Relaxed);
    }

    /// Marks a chunk delivered.
    pub fn commit(&self, chunk: &Chunk) {
        let mut state = self.lock();
        let Some(source) = state.sources.get_mut(chunk.source) else {
            return;
        };
        if source.segments.front() == Some(&chunk.segment) && chunk.end_offset > source.offset {
            let delivered = chunk.end_offset - source.offset;
            source.offset = chunk.end_offset;
            self.stats
                .pending_bytes
                .fetch_sub(delivered.min(self.pending_bytes()), Ordering::Relaxed);
        }
    }

    /// Deletes a fully read segment (and an adopted directory once it is empty).
    /// `unread` bytes at its end (a torn write, corruption) leave the pending count too.
    fn finish_segment(&self, source_index: usize, segment: u64, unread: u64) {
        let mut state = self.lock();
        let writer_segment = state.writer.segment;
        let source = &mut state.sources[source_index];
        if source.segments.front() != Some(&segment) || (source.own && segment == writer_segment) {
            return;
        }
        let _ = fs::remove_file(segment_path(&source.dir, segment));
        source.segments.pop_front();
        source.offset = 0;
        self.stats
            .pending_bytes
            .fetch_sub(unread.min(self.pending_bytes()), Ordering::Relaxed);
        if !source.own && source.segments.is_empty() {
            remove_spool_dir(&source.dir);
            state.sources.remove(source_index);
        }
    }

    /// Whether the unsent data is above `cap` bytes.
    pub fn over(&self, cap: u64) -> bool {
        self.pending_bytes() > cap
    }

    /// Drops the oldest unsent segment (the one `chunk` came from), returning every batch it
    /// still held so the caller can count and report what was lost.
    pub fn drop_oldest(&self, chunk: Chunk) -> Vec<SpoolEntry> {
        let (path, offset) = {
            let mut state = self.lock();
            // A segment being written is sealed first, under the same lock, so nothing can be
            // appended to it after it is read below (and then deleted unreported).
            if state.sources[chunk.source].own && state.writer.segment == chunk.segment {
                let next = chunk.segment + 1;
                let dir = own(&state).dir.clone();
                if let Ok(file) = open_segment(&dir, next) {
                    state.writer = Writer {
                        file,
                        segment: next,
                        bytes: 0,
                    };
                    own_mut(&mut state).segments.push_back(next);
                }
            }
            let source = &state.sources[chunk.source];
            (segment_path(&source.dir, chunk.segment), source.offset)
        };
        let data = match read_from(&path, offset) {
            Ok(data) => data,
            Err(error) => {
                // Over the cap something must go: this, uncounted by session, but said.
                error!(path = %path.display(), %error, "dropping a spool segment that does not read; its batches are not known");
                Vec::new()
            }
        };
        let decoded = decode_entries(&data, usize::MAX);
        let unread =
            fs::metadata(&path).map_or(data.len() as u64, |m| m.len().saturating_sub(offset));
        self.finish_segment(chunk.source, chunk.segment, unread);
        decoded.entries
    }

    /// On a clean exit with nothing left to send, the directory goes; otherwise it stays
    /// for the next daemon.
    pub fn close(&self) {
        let state = self.lock();
        let own = own(&state);
        if self.pending_bytes() == 0 && state.sources.len() == 1 {
            remove_spool_dir(&own.dir);
        } else {
            info!(dir = %own.dir.display(), bytes = self.pending_bytes(), "leaving undelivered batches for the next daemon");
        }
    }
}

fn own(state: &State) -> &Source {
    state.sources.last().expect("our own source is always last")
}

fn own_mut(state: &mut State) -> &mut Source {
    state
        .sources
        .last_mut()
        .expect("our own source is always last")
}

/// Removes a spool directory whose batches are all delivered; one still holding something
/// (a segment set aside as unreadable) stays for a person to look at, without the files that
/// would have the next daemon adopt it.
fn remove_spool_dir(dir: &Path) {
    let delivered = fs::read_dir(dir).into_iter().flatten().flatten();
    for segment in delivered.filter(|e| e.path().extension().is_some_and(|x| x == "seg")) {
        let _ = fs::remove_file(segment.path());
    }
    let _ = fs::remove_file(dir.join("meta.json"));
    let _ = fs::remove_file(dir.join("lock"));
    if let Err(error) = fs::remove_dir(dir) {
        warn!(dir = %dir.display(), %error, "a spool directory is kept: it holds what was not delivered");
    }
}

fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    Ok(data)
}

/// Appends an entry's encoding to `out`.
fn encode_into(entry: &SpoolEntry, out: &mut Vec<u8>) {
    let id = entry.session_id.as_bytes();
    let start = out.len();
    out.push(MAGIC);
    out.extend_from_slice(&[0; 8]); // length and checksum, once the body is there
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&entry.seq.to_le_bytes());
    out.extend_from_slice(&entry.records.to_le_bytes());
    out.extend_from_slice(&entry.payload);
    let body = start + HEADER;
    let len = (out.len() - body) as u32;
    let crc = crc32fast::hash(&out[body..]);
    out[start + 1..start + 5].copy_from_slice(&len.to_le_bytes());
    out[start + 5..body].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
fn encode(entry: &SpoolEntry) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(entry, &mut out);
    out
}

/// What [`decode_entries`] found.
struct Decoded {
    entries: Vec<SpoolEntry>,
    /// Bytes read: the entries and what was skipped among them.
    used: usize,
    /// Bytes of torn or corrupt entries skipped.
    skipped: usize,
}

/// Decodes up to `max` whole entries. A torn or corrupt entry is skipped up to the next
/// whole entry (found by its checksum); an incomplete one at the end is not there yet.
fn decode_entries(data: &[u8], max: usize) -> Decoded {
    let mut decoded = Decoded {
        entries: Vec::new(),
        used: 0,
        skipped: 0,
    };
    let mut at = 0;
    while decoded.entries.len() < max && data.len() - at >= HEADER {
        match entry_at(data, at) {
            Some(Some((entry, len))) => {
                decoded.entries.push(entry);
                at += len;
                decoded.used = at;
            }
            None => break, // Incomplete: the rest is still being written.
            Some(None) => {
                let next = (at + 1..data.len())
                    .find(|&from| matches!(entry_at(data, from), Some(Some(_))));
                let Some(next) = next else {
                    // Nothing whole after it (yet): the reader stops here.
                    break;
                };
                decoded.skipped += next - at;
                at = next;
                decoded.used = at;
            }
        }
    }
    decoded
}

/// The entry at `at` and its length; `Some(None)` if what is there is not an entry (torn or
/// corrupt); `None` if it may be one not yet wholly written.
fn entry_at(data: &[u8], at: usize) -> Option<Option<(SpoolEntry, usize)>> {
    let header = data.get(at..at + HEADER)?;
    if header[0] != MAGIC {
        return Some(None);
    }
    let len = u32::from_le_bytes(header[1..5].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[5..9].try_into().expect("4 bytes"));
    let body = data.get(at + HEADER..at + HEADER + len)?;
    if crc32fast::hash(body) != crc {
        return Some(None);
    }
    Some(decode_body(body).map(|entry| (entry, HEADER + len)))
}

fn decode_body(body: &[u8]) -> Option<SpoolEntry> {
    let id_len = u16::from_le_bytes(body.get(..2)?.try_into().ok()?) as usize;
    let session_id = std::str::from_utf8(body.get(2..2 + id_len)?)
        .ok()?
        .to_string();
    let rest = body.get(2 + id_len..)?;
    let seq = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let records = u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?);
    let payload = Bytes::copy_from_slice(rest.get(12..)?);
    Some(SpoolEntry {
        session_id,
        seq,
        records,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, size: usize) -> SpoolEntry {
        SpoolEntry {
            session_id: "s-1".into(),
            seq,
            records: 3,
            payload: Bytes::from(vec![seq as u8; size]),
        }
    }

    fn drain(spool: &Spool) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Some(chunk) = spool.next_chunk(7) {
            seqs.extend(chunk.entries.iter().map(|e| e.seq));
            spool.commit(&chunk);
        }
        seqs
    }

    #[cfg(unix)]
    #[test]
    fn the_spool_is_its_users_alone_and_names_no_credentials() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let spool_root = root.path().join("spool");
        let spool = Spool::open(
            &spool_root,
            "a",
            "nats://daemon:s3cret@h:4222",
            SpoolSync::Never,
        )
        .unwrap();
        spool.append(&[entry(1, 10)]).unwrap();
        let dir = spool_root.join("a");
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&spool_root), 0o700);
        assert_eq!(mode(&dir), 0o700);
        for file in ["lock", "meta.json", "0000000000000001.seg"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        let meta = fs::read_to_string(dir.join("meta.json")).unwrap();
        assert!(
            !meta.contains("s3cret") && meta.contains("nats://h:4222"),
            "{meta}"
        );
    }

    #[test]
    fn entries_come_back_in_order_across_segments() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path(), "a", "nats://x", SpoolSync::Never).unwrap();
        let entries: Vec<_> = (0..40).map(|seq| entry(seq, 300_000)).collect();
        for pair in entries.chunks(2) {
            spool.append(pair).unwrap();
        }
        assert_eq!(drain(&spool), (0..40).collect::<Vec<_>>());
        assert_eq!(spool.pending_bytes(), 0);
        let segments = fs::read_dir(root.path().join("a"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count();
        assert_eq!(segments, 1, "delivered sealed segments are deleted");
        spool.close();
        assert!(
            !root.path().join("a").exists(),
            "a clean exit removes the directory"
        );
    }

    #[test]
    fn a_dead_daemons_spool_is_adopted_by_the_next_one_for_the_same_nats() {
        let root = tempfile::tempdir().unwrap();
        let dead = Spool::open(root.path(), "dead", "nats://x", SpoolSync::Never).unwrap();
        dead.append(&[entry(1, 10), entry(2, 10)]).unwrap();
        let other_nats = Spool::open(root.path(), "other", "nats://y", SpoolSync::Never).unwrap();
        assert_eq!(
            other_nats.adopt_orphans(),
            0,
            "the lock is held while the daemon lives"
        );
        drop(dead); // The process dies: its lock goes.
        assert_eq!(
            other_nats.adopt_orphans(),
            0,
            "another NATS server's data is not ours to send"
        );
        let next = Spool::open(root.path(), "next", "nats://x", SpoolSync::Never).unwrap();
        next.append(&[entry(3, 10)]).unwrap();
        assert_eq!(drain(&next), vec![1, 2, 3]);
        assert!(!root.path().join("dead").exists());
    }

    #[test]
    fn a_torn_tail_is_skipped_and_the_rest_delivered() {
        let root = tempfile::tempdir().unwrap();
        let dead = Spool::open(root.path(), "dead", "nats://x", SpoolSync::Never).unwrap();
        dead.append(&[entry(1, 10), entry(2, 10)]).unwrap();
        let path = segment_path(&root.path().join("dead"), 1);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[MAGIC, 200, 0, 0, 0, 1, 2]).unwrap(); // Killed mid-write.
        drop(file);
        drop(dead);
        let next = Spool::open(root.path(), "next", "nats://x", SpoolSync::Never).unwrap();
        assert_eq!(drain(&next), vec![1, 2]);
        assert_eq!(next.pending_bytes(), 0);
    }

    #[test]
    fn dropping_the_oldest_segment_returns_what_was_lost() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path(), "a", "nats://x", SpoolSync::Never).unwrap();
        spool.append(&[entry(1, 100), entry(2, 100)]).unwrap();
        assert!(spool.over(100));
        let chunk = spool.next_chunk(1).unwrap();
        let lost = spool.drop_oldest(chunk);
        assert_eq!(lost.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(spool.pending_bytes(), 0);
        spool.append(&[entry(3, 100)]).unwrap();
        assert_eq!(drain(&spool), vec![3], "writing goes on in a fresh segment");
    }

    #[test]
    fn a_corrupt_entry_is_skipped_up_to_the_next_whole_one() {
        let mut bytes = encode(&entry(1, 20));
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        let decoded = decode_entries(&bytes, 10);
        assert!(decoded.entries.is_empty() && decoded.used == 0 && decoded.skipped == 0);
        let torn = bytes.len();
        bytes.extend(encode(&entry(2, 20)));
        bytes.extend(encode(&entry(3, 20)));
        let decoded = decode_entries(&bytes, 10);
        let seqs: Vec<u64> = decoded.entries.iter().map(|e| e.seq).collect();
        assert_eq!(
            (seqs, decoded.skipped, decoded.used),
            (vec![2, 3], torn, bytes.len())
        );
    }

    #[test]
    fn entries_after_a_torn_one_are_delivered_and_the_loss_counted() {
        let root = tempfile::tempdir().unwrap();
        let dead = Spool::open(root.path(), "dead", "nats://x", SpoolSync::Always).unwrap();
        dead.append(&[entry(1, 10)]).unwrap();
        let path = segment_path(&root.path().join("dead"), 1);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&encode(&entry(9, 50))[..30]).unwrap(); // Torn by a power cut.
        drop(file);
        dead.append(&[entry(2, 10), entry(3, 10)]).unwrap();
        drop(dead);
        let next = Spool::open(root.path(), "next", "nats://x", SpoolSync::Never).unwrap();
        assert_eq!(drain(&next), vec![1, 2, 3]);
        assert_eq!(next.stats.torn_bytes.load(Ordering::Relaxed), 30);
        assert_eq!(next.pending_bytes(), 0);
    }

    #[test]
    fn a_segment_that_does_not_read_is_kept_and_the_next_delivered() {
        let root = tempfile::tempdir().unwrap();
        let dead = Spool::open(root.path(), "dead", "nats://x", SpoolSync::Never).unwrap();
        dead.append(&[entry(1, 10)]).unwrap();
        drop(dead);
        let dir = root.path().join("dead");
        // Segment 1 fails every read (a directory where a file should be: EISDIR).
        fs::remove_file(segment_path(&dir, 1)).unwrap();
        fs::create_dir(segment_path(&dir, 1)).unwrap();
        fs::write(segment_path(&dir, 2), encode(&entry(2, 10))).unwrap();
        let next = Spool::open(root.path(), "next", "nats://x", SpoolSync::Never).unwrap();
        for _ in 1..READ_ATTEMPTS {
            assert!(
                next.next_chunk(7).is_none(),
                "tried again later, not skipped"
            );
        }
        assert_eq!(drain(&next), vec![2]);
        assert!(
            dir.join(format!("{:016}.seg.unreadable", 1)).exists(),
            "kept"
        );
        let stats = &next.stats;
        assert_eq!(
            stats.read_errors.load(Ordering::Relaxed),
            READ_ATTEMPTS as u64
        );
        assert_eq!(stats.unreadable_segments.load(Ordering::Relaxed), 1);
    }
}
