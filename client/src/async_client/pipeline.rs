//! Batches of the async client: the blocking [`Pipeline`](crate::Pipeline)'s builder methods,
//! each connection's share queued at once so it leaves in one write.

use ringcache_proto::Command;

use super::AsyncClient;
use crate::error::ClientError;
use crate::pipeline::batch_builders;
use crate::reply::Reply;

/// A batch of commands collected with the builder methods and sent by
/// [`AsyncPipeline::execute`], as [`Pipeline`](crate::Pipeline) does for the blocking client:
/// one result per command, in the order added; a failed command fails alone.
///
/// ```no_run
/// use ringcache_client::AsyncClient;
///
/// # async fn run() -> Result<(), ringcache_client::ClientError> {
/// let c = AsyncClient::connect("127.0.0.1:7379").await?;
/// let mut p = c.pipeline();
/// p.set("a", "1").incr_by("counter", 5).get("a");
/// let results = p.execute().await;
/// assert_eq!(results[2].clone()?.into_value()?, Some(b"1".to_vec()));
/// # Ok(())
/// # }
/// ```
#[must_use = "a pipeline does nothing until it is executed"]
pub struct AsyncPipeline<'c, 'a> {
    client: &'c AsyncClient,
    cmds: Vec<Result<Command<'a>, ClientError>>,
}

impl<'c, 'a> AsyncPipeline<'c, 'a> {
    pub(crate) fn new(client: &'c AsyncClient) -> Self {
        AsyncPipeline {
            client,
            cmds: Vec::new(),
        }
    }

    fn push(&mut self, cmd: Result<Command<'a>, ClientError>) -> &mut Self {
        self.cmds.push(cmd);
        self
    }

    /// Number of commands collected.
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    /// Whether no command was collected.
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    batch_builders!();

    /// Sends the batch and answers one result per command, in the order they were added.
    pub async fn execute(self) -> Vec<Result<Reply, ClientError>> {
        if self.cmds.is_empty() {
            return Vec::new();
        }
        if self.client.is_cluster() {
            return self.client.run_cluster(&self.cmds).await;
        }
        let ops: Vec<_> = self
            .cmds
            .into_iter()
            .map(|c| c.map(|c| self.client.plan(c)))
            .collect();
        self.client.run_ops(&ops).await
    }
}
