//! The generated code names everything by absolute paths: it compiles in a module with no
//! prelude and with look-alike names in scope.

#[no_implicit_prelude]
#[allow(dead_code)]
mod hygienic {
    // Decoys: if generated code named `Result`, `Option`, `Box` or `Send` by what is in scope,
    // it would pick these up and fail to compile.
    struct Result;
    struct Option;
    struct Box;
    trait Send {}
    mod serde {}
    mod rpc_core {}

    // Argument types named like the generic parameters generated code declares.
    #[derive(::serde::Serialize, ::serde::Deserialize)]
    pub struct S(pub u32);
    #[derive(::serde::Serialize, ::serde::Deserialize)]
    pub struct D(pub u32);

    #[::rpc_core::rpc_gateway]
    pub trait Hygienic {
        async fn ask(&mut self, value: ::std::string::String) -> ::std::string::String;
        fn tell(&mut self, value: u32);
        fn later(&mut self) -> ::rpc_core::Deferred<u32>;
        // Method and argument names that join alike (`a_b` + `c`, `a` + `b_c`).
        fn a_b(&mut self, c: S);
        fn a(&mut self, b_c: D);
    }

    pub struct Clean;

    impl ::rpc_core::RpcEndpoint for Clean {
        ::rpc_core::serves!(Hygienic);
    }

    impl Hygienic for Clean {
        async fn ask(&mut self, value: ::std::string::String) -> ::std::string::String {
            value
        }
        fn tell(&mut self, _value: u32) {}
        fn later(&mut self) -> ::rpc_core::Deferred<u32> {
            ::rpc_core::Deferred::ready(1)
        }
        fn a_b(&mut self, _c: S) {}
        fn a(&mut self, _b_c: D) {}
    }
}

use hygienic::{Clean, HygienicClient};

#[tokio::test]
async fn generated_code_is_hygienic() {
    let service = ::rpc_core::RpcService::new();
    ::std::assert!(service.start_endpoint("clean", Clean).await.is_ok());
    let client: HygienicClient = ::std::result::Result::unwrap(service.gateway("clean"));
    ::std::assert_eq!(
        ::std::result::Result::unwrap(client.ask("x".to_owned()).await),
        "x"
    );
    ::std::assert_eq!(::std::result::Result::unwrap(client.later().await), 1);
    service.shutdown().await.unwrap();
}
