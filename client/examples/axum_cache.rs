//! A small axum service doing cache-aside with ringcache's `AsyncClient`: reads go through
//! the cache (a miss loads from the "database" and is cached with a TTL and tags), updates
//! write the database and invalidate the product's tag. Every request shares one client.
//!
//! ```text
//! cargo run --release --bin ringcache -- local           # balancer on 127.0.0.1:7379
//! cargo run -p ringcache-client --features tokio --example axum_cache
//! curl localhost:3000/products/1                          # miss: loaded, then cached
//! curl localhost:3000/products/1                          # hit
//! curl -X PUT localhost:3000/products/1 -H 'content-type: application/json' \
//!      -d '{"name":"kettle","price_cents":2500,"category":"kitchen"}'
//! curl localhost:3000/products/1                          # miss again: the tag was invalidated
//! ```
//!
//! `RINGCACHE_ADDR` (default `127.0.0.1:7379`) names the balancer, or a single node;
//! `LISTEN` (default `127.0.0.1:3000`) the service's address.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use ringcache_client::{AsyncClient, ClientError, SetOpts};
use serde::{Deserialize, Serialize};

/// How long a cached product lives.
const TTL: Duration = Duration::from_secs(60);

/// A product as the database keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    name: String,
    price_cents: u64,
    category: String,
}

/// The answer of `GET /products/{id}`.
#[derive(Serialize)]
struct Lookup {
    product: Product,
    /// Whether the cache answered (false: the database did).
    cached: bool,
}

/// What every handler shares: the cache client (one per process, cloned per request) and a
/// stand-in for the database.
#[derive(Clone)]
struct App {
    cache: AsyncClient,
    db: Arc<RwLock<HashMap<u64, Product>>>,
    db_reads: Arc<AtomicU64>,
}

/// Handler errors as HTTP answers.
enum AppError {
    NotFound,
    Cache(ClientError),
    Decode(serde_json::Error),
}

impl axum::response::IntoResponse for AppError {
    fn into_response(self) -> axum::response::Response {
        match self {
            AppError::NotFound => (StatusCode::NOT_FOUND, "no such product").into_response(),
            AppError::Cache(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
            AppError::Decode(e) => {
                (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
            }
        }
    }
}

impl From<ClientError> for AppError {
    fn from(e: ClientError) -> Self {
        AppError::Cache(e)
    }
}

fn cache_key(id: u64) -> String {
    format!("product:{id}")
}

/// Cache-aside read: the cache first; on a miss the database, then the cache is filled with
/// a TTL and tagged with the product and its category.
async fn get_product(
    State(app): State<App>,
    Path(id): Path<u64>,
) -> Result<Json<Lookup>, AppError> {
    let key = cache_key(id);
    if let Some(bytes) = app.cache.get(&key).await? {
        let product = serde_json::from_slice(&bytes).map_err(AppError::Decode)?;
        return Ok(Json(Lookup {
            product,
            cached: true,
        }));
    }
    app.db_reads.fetch_add(1, Ordering::Relaxed);
    let product = {
        let db = app
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        db.get(&id).cloned().ok_or(AppError::NotFound)?
    };
    let bytes = serde_json::to_vec(&product).map_err(AppError::Decode)?;
    let opts = SetOpts::new()
        .ttl(TTL)
        .tag(&key)
        .tag(format!("category:{}", product.category));
    app.cache.set_with(&key, bytes, &opts).await?;
    Ok(Json(Lookup {
        product,
        cached: false,
    }))
}

/// Update: the database first, then every cached entry tagged with the product is dropped.
async fn put_product(
    State(app): State<App>,
    Path(id): Path<u64>,
    Json(product): Json<Product>,
) -> Result<StatusCode, AppError> {
    app.db
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(id, product);
    app.cache.invalidate_tag(cache_key(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How often the database was read.
async fn stats(State(app): State<App>) -> String {
    format!("db_reads {}\n", app.db_reads.load(Ordering::Relaxed))
}

/// A balancer's client when `addr` is one, else a single node's.
async fn connect(addr: &str) -> Result<AsyncClient, ClientError> {
    match AsyncClient::connect_cluster(addr).await {
        Ok(c) => Ok(c),
        Err(_) => AsyncClient::connect(addr).await,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("RINGCACHE_ADDR").unwrap_or_else(|_| "127.0.0.1:7379".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let cache = connect(&addr).await?;
    let db = (1..=100)
        .map(|id| {
            let p = Product {
                name: format!("product {id}"),
                price_cents: 100 * id,
                category: ["kitchen", "garden", "books"][id as usize % 3].into(),
            };
            (id, p)
        })
        .collect();
    let app = App {
        cache,
        db: Arc::new(RwLock::new(db)),
        db_reads: Arc::new(AtomicU64::new(0)),
    };
    let router = Router::new()
        .route("/products/{id}", get(get_product).put(put_product))
        .route("/stats", get(stats))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("cache-aside service on http://{listen}, cache at {addr}");
    axum::serve(listener, router).await?;
    Ok(())
}
