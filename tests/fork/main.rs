//! ipc-kit's cross-process suite: `cargo xtask test` runs it after the unit
//! tests. `--list` prints the case names; arguments filter them.

mod async_cases;
mod async_corners;
mod async_waits;
mod bad_input;
mod blackboard;
mod channel;
mod event;
mod examples;
mod fifo;
mod fifo_service;
mod hub_async;
mod hub_hostile;
mod hub_ls;
mod kit;
mod locks;
mod msgq;
mod pipe;
mod pipe_reopen;
mod poll;
mod poll_corners;
mod probe;
mod pubsub;
mod pubsub_hostile;
mod review;
mod service;
mod service_hostile;
mod service_more;
mod shm;
mod socket;
mod socket_hostile;
mod socket_umbrella;
mod sync;
mod typed;

fn main() -> std::process::ExitCode {
    ipc_kit_tests::main(
        &[
            pipe::CASES,
            pipe_reopen::CASES,
            shm::CASES,
            channel::CASES,
            sync::CASES,
            msgq::CASES,
            fifo::CASES,
            kit::CASES,
            poll::CASES,
            async_cases::CASES,
            async_corners::CASES,
            async_waits::CASES,
            poll_corners::CASES,
            bad_input::CASES,
            locks::CASES,
            review::CASES,
            probe::CASES,
            examples::CASES,
            socket::CASES,
            service::CASES,
            service_hostile::CASES,
            service_more::CASES,
            pubsub::CASES,
            pubsub_hostile::CASES,
            blackboard::CASES,
            event::CASES,
            hub_async::CASES,
            hub_hostile::CASES,
            hub_ls::CASES,
            socket_hostile::CASES,
            socket_umbrella::CASES,
            typed::CASES,
        ],
        &[shm::HELPERS, channel::HELPERS, sync::HELPERS, msgq::HELPERS, fifo::HELPERS, socket::HELPERS],
    )
}
