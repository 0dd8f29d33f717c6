//! The System V selector rules, checked against a model of the kernel's
//! behaviour with random sends and receives on a real queue.

use ipc_msgq::{Error, Key, Selector, SysvQueue};
use proptest::prelude::*;

#[path = "support/selector_model.rs"]
mod selector_model;

use selector_model::{pick, selector};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn receives_follow_the_kernels_type_rules(
        ops in prop::collection::vec(prop_oneof![(1i64..6).prop_map(Ok), selector(1..6).prop_map(Err)], 1..200)
    ) {
        let q = SysvQueue::create(Key::private(), 0o600).unwrap();
        let mut model: Vec<(i64, u64)> = Vec::new();
        let mut next = 0u64;
        let mut buf = [0u8; 8];
        for op in ops {
            match op {
                Ok(mtype) => {
                    q.send(mtype, &next.to_le_bytes()).unwrap();
                    model.push((mtype, next));
                    next += 1;
                }
                Err(sel) => match (q.try_recv(sel, &mut buf), pick(&model, sel)) {
                    (Ok((mtype, 8)), Some(i)) => {
                        let expected = model.remove(i);
                        prop_assert_eq!((mtype, u64::from_le_bytes(buf)), expected, "{:?}", sel);
                    }
                    (Err(Error::Empty), None) => {}
                    (got, want) => prop_assert!(false, "{:?}: got {:?}, the model says {:?}", sel, got, want),
                },
            }
        }
    }
}

#[test]
fn bad_input_is_refused_before_the_kernel() {
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    assert!(matches!(q.send(0, b"x"), Err(Error::InvalidType { mtype: 0 })));
    assert!(matches!(q.send(-3, b"x"), Err(Error::InvalidType { mtype: -3 })));
    let mut buf = [0u8; 4];
    assert!(matches!(q.try_recv(Selector::Exactly(0), &mut buf), Err(Error::InvalidType { .. })));
    assert!(matches!(q.try_recv(Selector::AtMost(-1), &mut buf), Err(Error::InvalidType { .. })));
    let max = ipc_msgq::sysv_max_message();
    match q.send(1, &vec![0; max + 1]) {
        Err(e @ Error::MessageTooLarge { .. }) => assert!(e.to_string().contains("msgmax"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Too long for the buffer: an error, and the message stays.
    q.send(1, b"eight by").unwrap();
    assert!(matches!(q.try_recv(Selector::Any, &mut buf), Err(Error::BufferTooSmall { len: 4, needed: None })));
    assert_eq!(q.stat().unwrap().messages, 1);
    assert_eq!(q.recv_truncating(Selector::Any, &mut buf).unwrap(), (1, 4));
    assert_eq!(&buf, b"eigh");
    assert!(matches!(SysvQueue::open(Key::private()), Err(Error::InvalidKey { .. })));
}
