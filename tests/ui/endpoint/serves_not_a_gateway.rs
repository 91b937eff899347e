use rpc_core::RpcEndpoint;

pub trait Plain {
    fn hi(&mut self) -> String;
}

struct Silent;

impl RpcEndpoint for Silent {
    rpc_core::serves!(Plain);
}

fn main() {}
