//! The two sub-commands: seeding the stock, and running the closed or open loop.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};

use crate::args::Options;
use crate::proto::reservation_result::Result as BatchResult;
use crate::proto::stock_service_client::StockServiceClient;
use crate::proto::SetStockRequest;
use crate::stats::{Outcome, Samples};
use crate::workload::{sku_name, Call, Workload, HOT_SKU};

type Client = StockServiceClient<Channel>;

/// A call that has not answered after this long has failed, whatever the server does later.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// After the last intended send, how long the open loop waits for calls still in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Seeding runs this many SetStock calls at once: enough to hide the round trip.
const SEED_CONCURRENCY: u64 = 64;
/// Messages of a 1,000-operation batch exceed tonic's 4 MiB default decoding limit only with
/// very long ids; 64 MiB leaves room without being unbounded.
const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

async fn connect(options: &Options) -> Result<Vec<Client>, String> {
    let mut clients = Vec::new();
    for _ in 0..options.connections {
        let endpoint = Endpoint::from_shared(format!("http://{}", options.target))
            .map_err(|error| error.to_string())?
            .tcp_nodelay(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| format!("connect: {error}"))?;
        clients.push(
            StockServiceClient::new(channel)
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX),
        );
    }
    Ok(clients)
}

/// Creates the hot SKU and `skus` spread SKUs, each with `on_hand` units, through SetStock.
pub async fn seed(options: Options) -> Result<String, String> {
    let clients = connect(&options).await?;
    let started = Instant::now();
    let total = options.skus + 1;
    let mut handles = Vec::new();
    for task in 0..SEED_CONCURRENCY {
        let mut client = clients[(task % options.connections) as usize].clone();
        let options = options.clone();
        handles.push(tokio::spawn(async move {
            let mut index = task;
            while index < total {
                let sku = if index == 0 {
                    HOT_SKU.to_string()
                } else {
                    sku_name(index - 1)
                };
                set_stock(&mut client, &options, sku).await?;
                index += SEED_CONCURRENCY;
            }
            Ok::<(), String>(())
        }));
    }
    for handle in handles {
        handle.await.map_err(|error| error.to_string())??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(
        serde_json::json!({"seeded": total, "on_hand": options.on_hand, "seconds": seconds})
            .to_string(),
    )
}

async fn set_stock(client: &mut Client, options: &Options, sku: String) -> Result<(), String> {
    let mut request = tonic::Request::new(SetStockRequest {
        request_id: String::new(),
        sku: sku.clone(),
        location: options.location.clone(),
        on_hand: options.on_hand as i64,
        expected_on_hand: None,
        reason: "benchmark seed".to_string(),
    });
    let bearer = format!("Bearer {}", options.token);
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().map_err(|_| "bad token")?);
    request.set_timeout(CALL_TIMEOUT);
    client
        .set_stock(request)
        .await
        .map_err(|status| format!("SetStock {sku}: {status}"))?;
    Ok(())
}

pub async fn run(options: Options) -> Result<String, String> {
    let clients = connect(&options).await?;
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_nanos() as u64;
    let (samples, extra) = if options.mode == "closed" {
        (
            closed_loop(&options, &clients, run_id).await,
            serde_json::json!({}),
        )
    } else {
        open_loop(&options, &clients, run_id).await
    };
    let mut report = samples.summary(options.duration_s as f64);
    let fields = report.as_object_mut().ok_or("summary is an object")?;
    fields.insert("options".into(), describe(&options));
    if let serde_json::Value::Object(extra) = extra {
        fields.extend(extra);
    }
    Ok(report.to_string())
}

fn describe(options: &Options) -> serde_json::Value {
    serde_json::json!({
        "target": options.target, "scenario": options.scenario, "mode": options.mode,
        "concurrency": options.concurrency, "rate": options.rate,
        "duration_s": options.duration_s, "warmup_s": options.warmup_s, "batch": options.batch,
        "connections": options.connections, "ttl_ms": options.ttl_ms, "skus": options.skus,
    })
}

/// `concurrency` tasks, each sending its next call as soon as the previous one answered.
/// Calls sent during the warm-up or answered after the end are not counted.
async fn closed_loop(options: &Options, clients: &[Client], run_id: u64) -> Samples {
    let measure_from = Instant::now() + Duration::from_secs(options.warmup_s);
    let end = measure_from + Duration::from_secs(options.duration_s);
    let mut handles = Vec::new();
    for task in 0..options.concurrency {
        let mut client = clients[(task % options.connections) as usize].clone();
        let mut workload = Workload::new(options, run_id, task);
        let batch = options.batch;
        handles.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            while Instant::now() < end {
                let sent = Instant::now();
                let outcome = call(&mut client, &mut workload, batch).await;
                let answered = Instant::now();
                if sent >= measure_from && answered <= end {
                    samples.record((answered - sent).as_micros() as u64, &outcome);
                }
            }
            samples
        }));
    }
    let mut merged = Samples::default();
    for handle in handles {
        if let Ok(samples) = handle.await {
            merged.merge(samples);
        }
    }
    merged
}

/// Sends at a fixed rate whatever the server does; each call's latency runs from the moment it
/// was meant to be sent, so time spent queued behind a slow answer is counted.
async fn open_loop(
    options: &Options,
    clients: &[Client],
    run_id: u64,
) -> (Samples, serde_json::Value) {
    let samples = Arc::new(Mutex::new(Samples::default()));
    let in_flight = Arc::new(Semaphore::new(options.concurrency as usize));
    let finished = Arc::new(AtomicU64::new(0));
    let mut workload = Workload::new(options, run_id, 0);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(options.warmup_s);
    // Exactly `rate` calls per second: call n is due at n / rate s, computed from the start
    // (adding a rounded interval drifted, and offered one call too many per run).
    let total = options.rate * (options.warmup_s + options.duration_s);
    let due = |n: u64| start + Duration::from_nanos(n * 1_000_000_000 / options.rate);
    let (mut intended, mut sent_count, mut dispatch_lag_max) = (start, 0u64, Duration::ZERO);
    while sent_count < total {
        let now = Instant::now();
        dispatch_lag_max = dispatch_lag_max.max(now.saturating_duration_since(intended));
        while intended <= now && sent_count < total {
            let task = OpenCall {
                client: clients[(sent_count % options.connections) as usize].clone(),
                prepared: workload.next_call(options.batch),
                intended,
                offset_us: (intended >= measure_from)
                    .then(|| (intended - measure_from).as_micros() as u64),
            };
            tokio::spawn(task.send(in_flight.clone(), samples.clone(), finished.clone()));
            sent_count += 1;
            intended = due(sent_count);
        }
        if sent_count < total {
            tokio::time::sleep_until(intended.into()).await;
        }
    }
    let drained = drain(&finished, sent_count).await;
    let merged = std::mem::take(&mut *samples.lock().expect("samples lock"));
    let extra = serde_json::json!({
        "offered_rate": options.rate, "intended_calls": options.rate * options.duration_s,
        "drained": drained, "dispatch_lag_ms_max": dispatch_lag_max.as_secs_f64() * 1_000.0,
    });
    (merged, extra)
}

/// Waits (bounded) until every call sent has finished, answered or timed out.
async fn drain(finished: &AtomicU64, sent_count: u64) -> bool {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while finished.load(Ordering::Acquire) < sent_count {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

struct OpenCall {
    client: Client,
    prepared: Call,
    intended: Instant,
    /// When it is meant to be sent, counted from the start of the measured window; None for
    /// a call sent before it (not counted).
    offset_us: Option<u64>,
}

impl OpenCall {
    async fn send(
        mut self,
        in_flight: Arc<Semaphore>,
        samples: Arc<Mutex<Samples>>,
        finished: Arc<AtomicU64>,
    ) {
        if let Ok(_permit) = in_flight.acquire_owned().await {
            let outcome = send(&mut self.client, self.prepared).await;
            if let Some(offset_us) = self.offset_us {
                let latency_us = self.intended.elapsed().as_micros() as u64;
                samples
                    .lock()
                    .expect("samples lock")
                    .record_at(offset_us, latency_us, &outcome);
            }
        }
        finished.fetch_add(1, Ordering::Release);
    }
}

/// One Reserve, or one ReserveBatch of `batch` reservations when `batch` > 0.
async fn call(client: &mut Client, workload: &mut Workload, batch: u64) -> Outcome {
    send(client, workload.next_call(batch)).await
}

async fn send(client: &mut Client, prepared: Call) -> Outcome {
    match prepared {
        Call::Single(reserve) => {
            let mut request = tonic::Request::new(reserve);
            request.set_timeout(CALL_TIMEOUT);
            match client.reserve(request).await {
                Ok(_) => Outcome {
                    code: "OK",
                    message: None,
                    operation_error: None,
                    operations_ok: 1,
                    operations_failed: 0,
                },
                Err(status) => failed(&status, 1),
            }
        }
        Call::Batch(batch) => {
            let size = batch.requests.len() as u64;
            let mut request = tonic::Request::new(batch);
            request.set_timeout(CALL_TIMEOUT);
            match client.reserve_batch(request).await {
                Ok(response) => {
                    let results = response.into_inner().results;
                    let ok = results
                        .iter()
                        .filter(|r| matches!(r.result, Some(BatchResult::Reservation(_))))
                        .count();
                    let operation_error = results.iter().find_map(|r| match &r.result {
                        Some(BatchResult::Error(error)) => {
                            Some(format!("{}: {}", error.code, error.message))
                        }
                        _ => None,
                    });
                    Outcome {
                        code: "OK",
                        message: None,
                        operation_error,
                        operations_ok: ok as u64,
                        operations_failed: size - ok as u64,
                    }
                }
                Err(status) => failed(&status, size),
            }
        }
    }
}

fn failed(status: &tonic::Status, operations: u64) -> Outcome {
    let message = Some(status.message().to_string());
    Outcome {
        code: code_name(status.code()),
        message,
        operation_error: None,
        operations_ok: 0,
        operations_failed: operations,
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
