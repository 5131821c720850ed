//! The facade as an app uses it: callbacks, or `async` if the app is Rust.
//!
//! Run against a server started with `pims server` (or the demo's):
//! `PIMS_SERVER_URL=http://127.0.0.1:8080 PIMS_ACCESS_TOKEN=… cargo run --example facade`

use std::sync::Arc;

use pims_core::Pims;
use pims_strongauth::host::{Host, StaticToken};
use pims_strongauth::StrongAuthFactory;
use serde_json::json;

#[tokio::main]
async fn main() {
    let server_url = std::env::var("PIMS_SERVER_URL").unwrap_or("http://127.0.0.1:8080".into());
    let token = std::env::var("PIMS_ACCESS_TOKEN").ok();

    // The app supplies the signed-in user's access token (and, on phones, its keystore).
    let host = Host::new(Arc::new(StaticToken(token)));
    let pims = Pims::builder()
        .component(StrongAuthFactory::new(host))
        .build();

    let config = json!({
        "environnement": "development",
        "components": { "strongAuthentication": {
            "serverUrl": server_url,
            "dataDirectory": std::env::temp_dir().join("pims-example"),
            "platform": "desktop"
        }}
    });
    println!("{}", pims.initialize_async(config).await);

    // Callback style, exactly like the reference (the callback runs on an SDK thread).
    let (done, wait) = std::sync::mpsc::channel();
    pims.get(
        "pims.authentication.account",
        json!({ "actionType": "strong", "type": "isDeviceActivated" }),
        move |message| {
            match message.status.as_str() {
                "SUCCEEDED" => println!(
                    "activated: {}",
                    message.result.unwrap()["isDeviceActivated"]
                ),
                _ => println!("failed: {}", message.to_json()["error"]),
            }
            done.send(()).unwrap();
        },
    );
    wait.recv().unwrap();

    // Async style: the same message, awaited.
    let message = pims
        .set_async(
            "pims.authentication.enrollment",
            json!({ "action": "enroll", "pinCode": "1234", "smsCode": "123456" }),
        )
        .await;
    println!("{message}");
}
