//! One function per endpoint: read the request, ask the service, render
//! the answer in the Engine API's shape.

mod archive;
mod attach;
mod build;
mod containers;
mod exec;
mod images;
mod system;
mod volumes;

use std::sync::Arc;

use crate::route::Route;
use crate::{Call, Daemon, Reply};

pub(crate) async fn dispatch(d: &Arc<Daemon>, r: Route, call: Call) -> Reply {
    match r {
        Route::Ping => Ok(system::ping(&call)),
        Route::Version => system::version(d).await,
        Route::Info => system::info(d).await,
        Route::SystemDf => system::df(d).await,
        Route::Events => system::events(d, call).await,
        Route::Auth => system::auth(call).await,
        Route::ContainerList => containers::list(d, call).await,
        Route::ContainerCreate => containers::create(d, call).await,
        Route::ContainerPrune => containers::prune(d).await,
        Route::Container(id, crate::route::ContainerOp::Attach) => {
            attach::attach(d, id, call).await
        }
        Route::Container(id, crate::route::ContainerOp::ArchiveGet) => {
            archive::get(d, id, call, false).await
        }
        Route::Container(id, crate::route::ContainerOp::ArchiveHead) => {
            archive::get(d, id, call, true).await
        }
        Route::Container(id, crate::route::ContainerOp::ArchivePut) => {
            archive::put(d, id, call).await
        }
        Route::Container(id, crate::route::ContainerOp::ExecCreate) => {
            exec::create(d, id, call).await
        }
        Route::Container(id, op) => containers::op(d, id, op, call).await,
        Route::Exec(id, op) => exec::op(d, id, op, call).await,
        Route::Build => build::build(d, call).await,
        Route::ImageList => images::list(d, call).await,
        Route::ImageCreate => images::create(d, call).await,
        Route::Commit => images::commit(d, call).await,
        Route::ImageLoad => images::load(d, call).await,
        Route::ImageGetAll => {
            let names = call
                .query
                .all("names")
                .iter()
                .map(|s| s.to_string())
                .collect();
            images::save(d, names).await
        }
        Route::ImagePrune => images::prune(d, call).await,
        Route::Image(name, op) => images::op(d, name, op, call).await,
        Route::VolumeList => volumes::list(d, call).await,
        Route::VolumeCreate => volumes::create(d, call).await,
        Route::VolumePrune => volumes::prune(d, call).await,
        Route::Volume(name, delete) => volumes::one(d, name, delete, call).await,
        // Until the networking issue: the modes berth has, as networks.
        Route::NetworkList => Ok(crate::json(200, &system::networks())),
        Route::Network(name, crate::route::NetworkOp::Inspect) => {
            let all = system::networks();
            let found = all
                .as_array()
                .and_then(|a| a.iter().find(|n| n["Name"] == name.as_str() || n["Id"] == name.as_str()))
                .cloned();
            match found {
                Some(n) => Ok(crate::json(200, &n)),
                None => Err(crate::ApiError::not_found(format!("network {name} not found"))),
            }
        }
        Route::NetworkCreate => Err(crate::ApiError::not_implemented(
            "creating networks (bridge networking comes with the networking work; berth has host and none)",
        )),
        Route::BuildPrune => images::prune_build_cache(d).await,
        // Only host and none exist until bridge networking: nothing to
        // prune.
        Route::NetworkPrune => Ok(crate::json(200, &serde_json::json!({"NetworksDeleted": []}))),
        Route::ImageSearch => Err(crate::ApiError::new(
            501,
            "berth daemon has no image search: registries speak the distribution API, which has none \
             (a registry's repositories are listed by its GET /v2/_catalog)",
        )),
        r => Err(crate::unserved(&r)),
    }
}
