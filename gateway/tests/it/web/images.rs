//! An egress image shown inline on its preview page: served whole under `/ui/` through the
//! preview's own authorization, as an audited read, with the type the checks found, never
//! sniffed and sandboxed; any file the checks did not type as an image is refused.

use reqwest::StatusCode;

use super::Browser;
use crate::support::{Engine, TestApp, docker_available};

/// A PNG of `width` × `height` RGB pixels in stripes, made here (stored deflate blocks, no
/// encoder needed), so the test knows every byte the page must serve.
pub(crate) fn striped_png(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // no filter
        for x in 0..width {
            let on = (x / 4 + y / 4) % 2 == 0;
            raw.extend_from_slice(if on {
                &[0x0b, 0x4f, 0xa8]
            } else {
                &[0xff, 0xff, 0xff]
            });
        }
    }
    // zlib: a header, stored blocks of at most 65535 bytes, the Adler-32 of the data.
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, not interlaced
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &z);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// An egress application of ana's (in `small_world_on`'s project p1) for a table whose count of
/// zero is flagged (`counts.csv`) and an image (`plot.png`); its id and the image's bytes.
pub(crate) async fn egress_with_image(app: &TestApp, ana: &str) -> (String, Vec<u8>) {
    let png = striped_png(32, 16);
    let escaped: String = png.iter().map(|b| format!("\\{b:03o}")).collect();
    let script = format!(
        "printf 'group,count\\nA,25\\nB,0\\n' > /vre/output/counts.csv && \
         printf '{escaped}' > /vre/output/plot.png"
    );
    let id = super::review::egress_of(app, ana, &script, &["counts.csv", "plot.png"]).await;
    (id, png)
}

/// A GET of `path` with the browser's cookies, its body as bytes.
async fn get_bytes(b: &Browser, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let cookies: Vec<String> = b.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let resp = b
        .http
        .get(format!("{}{path}", b.base))
        .header("cookie", cookies.join("; "))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_egress_image_is_shown_inline_to_reviewers_only_as_an_audited_read() {
    if !docker_available() {
        return;
    }
    let (app, ana, _data) = crate::sandbox::small_world_on(Engine::Sqlite, |_| {}).await;
    let (id, png) = egress_with_image(&app, &ana).await;
    let image = format!("/ui/applications/{id}/image?path=plot.png&round=1");

    let mut b = Browser::new(&app);
    b.accept_language = Some("en");
    // Not signed in: nothing but the way to sign in.
    let (st, headers, _) = get_bytes(&b, &image).await;
    assert!(st.is_redirection(), "{st}");
    assert_eq!(headers["location"], "/ui/sign-in");
    assert_eq!(
        b.sign_in(&app.token("rev", "reviewer")).await.status,
        StatusCode::SEE_OTHER
    );

    // The preview page names the image and shows it from the gateway.
    let page = b
        .get(&format!("/ui/applications/{id}/preview?path=plot.png"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let tag = format!(
        "<img class=\"preview\" src=\"{}\" alt=\"The image in plot.png\" width=\"32\" height=\"16\">",
        image.replace('&', "&amp;")
    );
    assert!(page.body.contains(&tag), "{tag} not in {}", page.body);
    let mut ja = Browser::new(&app);
    ja.accept_language = Some("ja");
    ja.sign_in(&app.token("rev", "reviewer")).await;
    let page = ja
        .get(&format!("/ui/applications/{id}/preview?path=plot.png"))
        .await;
    assert!(
        page.body.contains("alt=\"plot.png の画像\""),
        "{}",
        page.body
    );

    // The bytes as they left the sandbox, with the type the checks found, never sniffed,
    // sandboxed, and read on the record.
    let before = app.audit_events(&id).await.len();
    let (st, headers, body) = get_bytes(&b, &image).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body, png);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(
        headers["content-security-policy"],
        "sandbox; default-src 'none'"
    );
    assert_eq!(headers["content-length"], png.len().to_string());
    let events = app.audit_events(&id).await;
    assert_eq!(events.len(), before + 1);
    let read = events.last().unwrap();
    assert_eq!(read["action"], "content.read");
    assert_eq!(read["actor"], "rev");
    let detail: serde_json::Value = serde_json::from_str(read["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["egress_file"], "plot.png", "{read}");
    assert_eq!(detail["whole"], true, "{read}");

    // A table is no image: refused, and nothing read.
    let (st, _, body) =
        get_bytes(&b, &format!("/ui/applications/{id}/image?path=counts.csv")).await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(String::from_utf8_lossy(&body).contains("not_image"));
    let (st, _, _) = get_bytes(&b, &format!("/ui/applications/{id}/image?path=nope.png")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(app.audit_events(&id).await.len(), before + 1);

    // Neither the requester nor someone who is no reviewer sees it.
    for (who, roles) in [("ana", "analyst,reviewer"), ("olga", "operator")] {
        let mut other = Browser::new(&app);
        assert_eq!(
            other.sign_in(&app.token(who, roles)).await.status,
            StatusCode::SEE_OTHER
        );
        let (st, headers, body) = get_bytes(&other, &image).await;
        assert!(
            st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND,
            "{who}: {st}"
        );
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{who}"
        );
        assert_ne!(body, png, "{who}");
    }
    assert_eq!(app.audit_events(&id).await.len(), before + 1);
    app.stop().await;
}
