use rpc_core::rpc_gateway;

#[rpc_gateway(fenced = "JobMasterId")]
pub trait JobMaster {
    async fn submit(&mut self, job: u64) -> u64;
}

#[rpc_gateway(fenced(JobMasterId))]
pub trait TaskManager {
    async fn offer(&mut self, slot: u64) -> bool;
}

#[rpc_gateway(fenced, fenced)]
pub trait Dispatcher {
    async fn dispatch(&mut self, job: u64);
}

#[rpc_gateway(fenced)]
pub trait Shadowed {
    async fn fencing_token(&mut self) -> u64;
}

fn main() {}
