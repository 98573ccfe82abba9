//! A shard's partition of the deferred store, driven asynchronously.
//!
//! The shard thread keeps the bookkeeping and the read maps ([`FsStore`]); every blocking
//! step — writing a batch, `fdatasync`, cutting back a failed batch, deleting segments, and
//! faulting in pages of a cold message or of records compaction will move — runs on the
//! executor's blocking thread
//! (`spawn_blocking`), so a slow disk delays acknowledgements, never the shard's sockets.
//! One job is out at a time; appends arriving meanwhile queue in the bookkeeping and form
//! the next batch (group commit without a timer).
//!
//! Recipients are owned by `store::shard_of(aor, shards)`; an append for a recipient another
//! shard owns travels there over the mesh ([`crate::runtime::mesh::ShardMsg::StoreAppend`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use glommio::channels::channel_mesh::Senders;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::sync::Semaphore;

use crate::limits::{STORE_UPKEEP_INTERVAL_MS, STORE_UPLOAD_WAKE_BYTES};
use crate::msrp::relay::Sink;
use crate::runtime::mesh::ShardMsg;
pub use crate::store::core::AppendRequest;
use crate::store::core::{StoreError, Ticket};
use crate::store::fs::{FsStore, StoredMessage, Summary};
use crate::store::record::MessageId;

/// What a shard's store did, for the counters printed at stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub stored: u64,
    pub refused: u64,
    pub batches: u64,
    pub failed_batches: u64,
    /// Reads whose pages were not all in memory and were faulted in off the shard.
    pub cold_reads: u64,
}

impl StoreStats {
    pub fn add(&mut self, o: &StoreStats) {
        self.stored += o.stored;
        self.refused += o.refused;
        self.batches += o.batches;
        self.failed_batches += o.failed_batches;
        self.cold_reads += o.cold_reads;
    }
}

type Reply = LocalSender<Result<MessageId, StoreError>>;

/// One shard's store partition.
pub struct ShardStore {
    fs: RefCell<FsStore>,
    waiting: RefCell<HashMap<Ticket, Reply>>,
    /// Signalled when something was queued; closed at stop.
    work: Semaphore,
    /// Set once the driver has written everything and ended.
    drained: Semaphore,
    closed: Cell<bool>,
    /// A job is running on the blocking thread; `job_done` is signalled when it returns.
    job_out: Cell<bool>,
    job_done: Semaphore,
    /// Stopping after the grace period: run no job after the current one.
    stop_taking: Cell<bool>,
    stats: Cell<StoreStats>,
}

/// Unix time in milliseconds (the store's clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ShardStore {
    pub fn new(fs: FsStore) -> Rc<ShardStore> {
        Rc::new(ShardStore {
            fs: RefCell::new(fs),
            waiting: RefCell::new(HashMap::new()),
            work: Semaphore::new(0),
            drained: Semaphore::new(0),
            closed: Cell::new(false),
            job_out: Cell::new(false),
            job_done: Semaphore::new(0),
            stop_taking: Cell::new(false),
            stats: Cell::new(StoreStats::default()),
        })
    }

    /// Starts the driver and the upkeep timer on the current executor.
    pub fn start(self: &Rc<Self>) {
        glommio::spawn_local(drive(Rc::clone(self))).detach();
        glommio::spawn_local(upkeep(Rc::clone(self))).detach();
    }

    pub fn stats(&self) -> StoreStats {
        self.stats.get()
    }

    fn count(&self, f: impl FnOnce(&mut StoreStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Stores a message of a recipient this shard owns; resolves once it is durable (or
    /// refused: policy, quota, a failed write, or the store stopping).
    pub async fn append(&self, now_ms: u64, req: &AppendRequest) -> Result<MessageId, StoreError> {
        if self.closed.get() {
            return Err(StoreError::Io("the store is stopping".into()));
        }
        let ticket = self.fs.borrow_mut().submit(
            now_ms,
            &req.aor,
            &req.sender,
            &req.content_type,
            &req.body,
            req.retention_ms,
        );
        let ticket = match ticket {
            Ok(t) => t,
            Err(e) => {
                self.count(|s| s.refused += 1);
                return Err(e);
            }
        };
        let (tx, rx) = local_channel::new_bounded(1);
        self.waiting.borrow_mut().insert(ticket, tx);
        self.work.signal(1);
        rx.recv()
            .await
            .unwrap_or_else(|| Err(StoreError::Io("the store stopped".into())))
    }

    /// Whether `aor` may store a message of `bytes` (when known) now.
    pub fn may_store(&self, aor: &[u8], bytes: Option<u64>) -> Result<(), StoreError> {
        if self.closed.get() {
            return Err(StoreError::Io("the store is stopping".into()));
        }
        self.fs.borrow().core().may_store(aor, bytes)
    }

    /// A receiver of ticket `t`'s outcome (a message queued through [`StoreSink`]); made
    /// before the shard yields, so the outcome cannot pass by unheard.
    pub fn outcome(
        &self,
        t: Ticket,
    ) -> local_channel::LocalReceiver<Result<MessageId, StoreError>> {
        let (tx, rx) = local_channel::new_bounded(1);
        if self.closed.get() {
            let _ = tx.try_send(Err(StoreError::Io("the store is stopping".into())));
        } else {
            self.waiting.borrow_mut().insert(t, tx);
        }
        rx
    }

    /// Marks a message delivered; the mark is durable with the next batch.
    pub fn deliver(&self, now_ms: u64, aor: &[u8], id: MessageId) -> Result<(), StoreError> {
        self.fs.borrow_mut().mark_delivered(now_ms, aor, id)?;
        self.work.signal(1);
        Ok(())
    }

    /// Removes a message its recipient refused for good; durable with the next batch.
    pub fn discard(&self, now_ms: u64, aor: &[u8], id: MessageId) -> Result<(), StoreError> {
        self.fs.borrow_mut().discard(now_ms, aor, id)?;
        self.work.signal(1);
        Ok(())
    }

    /// Every recipient with pending messages.
    pub fn recipients(&self) -> Vec<Vec<u8>> {
        self.fs
            .borrow()
            .core()
            .recipients()
            .map(|(aor, ..)| aor.to_vec())
            .collect()
    }

    /// Pending messages of `aor`, oldest first.
    pub fn pending(&self, aor: &[u8]) -> Vec<MessageId> {
        self.fs.borrow().core().pending(aor).map(|e| e.id).collect()
    }

    /// Pending messages of `aor`, oldest first, of one kind: session mode (stored in
    /// chunks, delivered over MSRP) or pager mode (delivered as `MESSAGE`).
    pub fn pending_of(&self, aor: &[u8], session: bool) -> Vec<MessageId> {
        self.fs
            .borrow()
            .core()
            .pending(aor)
            .filter(|e| e.commit_segment.is_some() == session)
            .map(|e| e.id)
            .collect()
    }

    /// What a list says of each of `ids` still pending (first records faulted in off the
    /// shard when cold, as for [`ShardStore::read`]).
    pub async fn summaries(&self, aor: &[u8], ids: &[MessageId]) -> Vec<Summary> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let Ok(head) = self.fs.borrow_mut().head_pages(aor, id) else {
                continue;
            };
            if !head.resident() {
                self.count(|s| s.cold_reads += 1);
                head.prefetch();
                glommio::executor()
                    .spawn_blocking(move || head.touch())
                    .await;
            }
            if let Ok(s) = self.fs.borrow_mut().summary(aor, id) {
                out.push(s);
            }
        }
        out
    }

    /// Reads a stored message for sending. When some pages of its records are not in
    /// memory, they are asked for at once (`MADV_WILLNEED`) and faulted in on the blocking
    /// thread before the records are read and verified here, so the shard does not wait on
    /// the disk inside a page fault.
    pub async fn read(&self, aor: &[u8], id: MessageId) -> Result<StoredMessage, StoreError> {
        let records = self.fs.borrow_mut().records(aor, id)?;
        if !records.resident() {
            self.count(|s| s.cold_reads += 1);
            records.prefetch();
            glommio::executor()
                .spawn_blocking(move || records.touch())
                .await;
        }
        // Delivered or expired meanwhile: then it is gone, and this says so.
        self.fs.borrow_mut().message(aor, id)
    }

    /// Hands out every acknowledgement the bookkeeping has.
    fn answer(&self) {
        loop {
            let ack = self.fs.borrow_mut().poll_ack();
            let Some(ack) = ack else { break };
            self.count(|s| match ack.result {
                Ok(_) => s.stored += 1,
                Err(_) => s.refused += 1,
            });
            if let Some(tx) = self.waiting.borrow_mut().remove(&ack.ticket) {
                let _ = tx.try_send(ack.result);
            }
        }
    }

    /// Stops taking appends and waits (at most `grace`) until everything queued is
    /// written. Past the grace period the job on the blocking thread, if any, is still
    /// waited for (its appends get their true outcome); what was never written is refused.
    pub async fn close(&self, grace: Duration) {
        self.closed.set(true);
        self.work.close();
        let drained =
            futures_lite::future::or(async { self.drained.acquire(1).await.is_ok() }, async {
                glommio::timer::sleep(grace).await;
                false
            })
            .await;
        if !drained {
            self.stop_taking.set(true);
            while self.job_out.get() {
                let _ = self.job_done.acquire(1).await;
            }
        }
        for (_, tx) in self.waiting.borrow_mut().drain() {
            let _ = tx.try_send(Err(StoreError::Io("the store stopped".into())));
        }
    }
}

/// Routes a shard's store calls: to its own partition, or over the mesh to the shard that
/// owns the recipient.
pub struct StoreRouter {
    index: usize,
    shards: usize,
    store: Rc<ShardStore>,
    /// Appends sent to other shards, by token, waiting for their answer.
    calls: RefCell<HashMap<u64, Reply>>,
    next_call: Cell<u64>,
}

impl StoreRouter {
    pub fn new(index: usize, shards: usize, store: Rc<ShardStore>) -> StoreRouter {
        StoreRouter {
            index,
            shards,
            store,
            calls: RefCell::new(HashMap::new()),
            next_call: Cell::new(0),
        }
    }

    /// This shard's own partition.
    pub fn local(&self) -> &Rc<ShardStore> {
        &self.store
    }

    /// The shard that owns `aor`'s messages.
    pub fn owner(&self, aor: &[u8]) -> usize {
        crate::store::shard_of(aor, self.shards)
    }

    /// Stores a message durably wherever its recipient is owned.
    pub async fn append(
        &self,
        senders: &Senders<ShardMsg>,
        req: AppendRequest,
    ) -> Result<MessageId, StoreError> {
        let owner = self.owner(&req.aor);
        if owner == self.index {
            return self.store.append(now_ms(), &req).await;
        }
        let token = self.next_call.get();
        self.next_call.set(token + 1);
        let (tx, rx) = local_channel::new_bounded(1);
        self.calls.borrow_mut().insert(token, tx);
        let sent = senders
            .send_to(
                owner,
                ShardMsg::StoreAppend {
                    from: self.index,
                    token,
                    req,
                },
            )
            .await;
        if let Err(e) = sent {
            self.calls.borrow_mut().remove(&token);
            return Err(StoreError::Io(format!("cannot reach shard {owner}: {e:?}")));
        }
        rx.recv()
            .await
            .unwrap_or_else(|| Err(StoreError::Io("the store stopped".into())))
    }

    /// Handles a store message from the mesh; gives back any other message.
    pub fn handle(
        self: &Rc<Self>,
        senders: &Rc<Senders<ShardMsg>>,
        msg: ShardMsg,
    ) -> Option<ShardMsg> {
        match msg {
            ShardMsg::StoreAppend { from, token, req } => {
                // The append waits for its batch; the mesh receiver must not.
                let me = Rc::clone(self);
                let senders = Rc::clone(senders);
                glommio::spawn_local(async move {
                    let result = me.store.append(now_ms(), &req).await;
                    let _ = senders
                        .send_to(from, ShardMsg::StoreAppended { token, result })
                        .await;
                })
                .detach();
                None
            }
            ShardMsg::StoreAppended { token, result } => {
                if let Some(tx) = self.calls.borrow_mut().remove(&token) {
                    let _ = tx.try_send(result);
                }
                None
            }
            other => Some(other),
        }
    }

    /// Refuses every append still waiting on another shard (this shard is stopping).
    pub fn abandon_calls(&self) {
        for (_, tx) in self.calls.borrow_mut().drain() {
            let _ = tx.try_send(Err(StoreError::Io("the store stopped".into())));
        }
    }
}

/// Runs jobs while there are any; returns when only retries are left.
async fn run_jobs(store: &ShardStore) {
    loop {
        if store.stop_taking.get() {
            return;
        }
        let job = store.fs.borrow_mut().next_job();
        let Some(job) = job else { return };
        let had_batch = job.has_batch();
        let files = store.fs.borrow_mut().take_files();
        let Some(mut files) = files else { return };
        store.job_out.set(true);
        let (files, done) = glommio::executor()
            .spawn_blocking(move || {
                let done = files.run(job);
                (files, done)
            })
            .await;
        store.job_out.set(false);
        store.job_done.signal(1);
        let failed = done.batch_failed();
        store.fs.borrow_mut().finish_job(files, done);
        if had_batch {
            store.count(|s| {
                s.batches += 1;
                s.failed_batches += u64::from(failed);
            });
        }
        store.answer();
        if !had_batch {
            // Only cuts or deletions: tried again at the next append or upkeep.
            return;
        }
    }
}

async fn drive(store: Rc<ShardStore>) {
    while store.work.acquire(1).await.is_ok() {
        // Everything signalled so far is covered by this round.
        while store.work.try_acquire(1).unwrap_or(false) {}
        run_jobs(&store).await;
    }
    // Closed: write what is queued, then say so.
    run_jobs(&store).await;
    store.drained.signal(1);
}

async fn upkeep(store: Rc<ShardStore>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(STORE_UPKEEP_INTERVAL_MS)).await;
        if store.closed.get() {
            return;
        }
        // Compaction reads and verifies the records it moves: fault them in off the shard.
        let records = store.fs.borrow_mut().compaction_records();
        if let Some(records) = records.filter(|r| !r.resident()) {
            records.prefetch();
            glommio::executor()
                .spawn_blocking(move || records.touch())
                .await;
        }
        store.fs.borrow_mut().upkeep(now_ms());
        store.work.signal(1);
    }
}

/// The shard's partition as the sink of its deferred-role MSRP sessions
/// ([`crate::msrp::relay::Sink`]): pieces go into the bookkeeping at once and wake the
/// writer every [`STORE_UPLOAD_WAKE_BYTES`] (a large message is written as it comes, in
/// batches of about that size, not synced per chunk); a finished message wakes it at once.
pub struct StoreSink {
    store: Rc<ShardStore>,
    /// Piece bytes queued since the writer was last woken.
    unsignalled: usize,
}

impl StoreSink {
    pub fn new(store: Rc<ShardStore>) -> StoreSink {
        StoreSink {
            store,
            unsignalled: 0,
        }
    }

    fn wake(&mut self) {
        self.unsignalled = 0;
        self.store.work.signal(1);
    }
}

/// The shard's partition is the store's bookkeeping ([`Sink`] for `Store`) plus waking its
/// writer, and a refusal once the store stops.
impl Sink for StoreSink {
    fn may_store(&self, aor: &[u8], bytes: Option<u64>) -> Result<(), StoreError> {
        self.store.may_store(aor, bytes)
    }

    fn waiting(&self, aor: &[u8]) -> Vec<crate::msrp::relay::Waiting> {
        self.store.fs.borrow().core().waiting(aor)
    }

    fn begin(
        &mut self,
        now_ms: u64,
        aor: &[u8],
        sender: &[u8],
        content_type: &[u8],
        total: Option<u64>,
    ) -> Result<crate::store::core::UploadId, StoreError> {
        if self.store.closed.get() {
            return Err(StoreError::Io("the store is stopping".into()));
        }
        let mut fs = self.store.fs.borrow_mut();
        fs.core_mut()
            .begin(now_ms, aor, sender, content_type, total)
    }

    fn piece(
        &mut self,
        now_ms: u64,
        up: crate::store::core::UploadId,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let r = {
            let mut fs = self.store.fs.borrow_mut();
            fs.core_mut().piece(now_ms, up, offset, data)
        };
        self.unsignalled += data.len();
        if self.unsignalled >= STORE_UPLOAD_WAKE_BYTES {
            self.wake();
        }
        r
    }

    fn finish(
        &mut self,
        now_ms: u64,
        up: crate::store::core::UploadId,
    ) -> Result<Ticket, StoreError> {
        let r = {
            let mut fs = self.store.fs.borrow_mut();
            fs.core_mut().finish(now_ms, up)
        };
        self.wake();
        r
    }

    fn abort(&mut self, now_ms: u64, up: crate::store::core::UploadId, reason: u16) {
        {
            let mut fs = self.store.fs.borrow_mut();
            fs.core_mut().abort(now_ms, up, reason);
        }
        self.wake();
    }
}

#[cfg(test)]
mod tests;
