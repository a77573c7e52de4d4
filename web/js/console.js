// SPDX-License-Identifier: MIT
// The VM's serial console over the WebSocket /v1/vms/NAME/console/ws (ferryd sends the last
// 4 KiB kept, then the output as it comes, as text frames, and types what it receives into
// the guest; the session cookie authenticates it). A line typed below is sent with a newline;
// Ctrl-C and Ctrl-D buttons send those bytes. Without the WebSocket (an older ferryd, a
// proxy that refuses upgrades) the output is polled from GET .../console and typing is off.
// When the VM moves to another node the socket stays: ferryd relays the console from there.
import { get, enc } from "./api.js";
import { h } from "./dom.js";

const MAX_CHARS = 200000;
// Terminal control sequences (colours, cursor moves) and carriage returns: a <pre> shows text.
// eslint-disable-next-line no-control-regex
const CONTROL = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]|\r|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g;

export class SerialConsole {
  constructor(vm) {
    this.vm = vm;
    this.out = h("pre#console-out.console", { tabindex: 0, "aria-label": `${vm}'s serial console` });
    this.status = h("span#console-status.muted", "connecting…");
    this.input = h("input#console-in", { type: "text", autocomplete: "off", spellcheck: "false",
      placeholder: "type a command, Enter sends it", "aria-label": "console input" });
    const form = h("form.console-form", h("span.prompt", ">"), this.input,
      h("button", { type: "submit" }, "Send"),
      h("button.ghost", { type: "button", title: "send Ctrl-C", onclick: () => this.send("\x03") }, "^C"),
      h("button.ghost", { type: "button", title: "send Ctrl-D", onclick: () => this.send("\x04") }, "^D"));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (this.send(this.input.value + "\n")) this.input.value = "";
    });
    this.el = h("div.console-box", h("div.console-head", h("strong", "Serial console"), " ", this.status), this.out, form);
    this.ws = null;
    this.offset = null;
    this.closed = false;
    this.timer = null;
    this.polling = false;
    this.loggedOut = false;
    this.decoder = new TextDecoder();
  }

  write(text) {
    const clean = text.replace(CONTROL, "");
    if (!clean) return;
    const atBottom = this.out.scrollTop + this.out.clientHeight >= this.out.scrollHeight - 8;
    let t = this.out.textContent + clean;
    if (t.length > MAX_CHARS) t = t.slice(t.length - MAX_CHARS);
    this.out.textContent = t;
    if (atBottom) this.out.scrollTop = this.out.scrollHeight;
  }

  start() {
    this.connect();
  }

  connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/v1/vms/${enc(this.vm)}/console/ws`);
    } catch (_) {
      this.fallback("the browser refused the WebSocket");
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      this.out.textContent = ""; // the socket starts with the newest output kept: no repeats
      this.status.textContent = "connected";
      this.status.className = "good-text";
      this.input.disabled = false;
    });
    ws.addEventListener("message", (m) => {
      this.write(typeof m.data === "string" ? m.data : this.decoder.decode(m.data, { stream: true }));
    });
    ws.addEventListener("close", (ev) => {
      if (this.closed || this.ws !== ws) return;
      this.ws = null;
      if (!opened) {
        this.fallback("no console WebSocket here");
        return;
      }
      if (ev.code === 1008 || ev.code === 1001) {
        this.loggedOut = ev.code === 1008;
        // The login ended, or the VM is gone: reconnecting would not help.
        this.status.textContent = `closed: ${ev.reason || (ev.code === 1001 ? "the VM is gone" : "the session ended")}`;
        this.status.className = "warn-text";
        this.input.disabled = true;
        return;
      }
      this.status.textContent = `disconnected (${ev.reason || ev.code}); reconnecting…`;
      this.status.className = "warn-text";
      this.input.disabled = true;
      this.timer = setTimeout(() => !this.closed && this.connect(), 2000);
    });
  }

  // Read-only: the output polled every 1.5 s (the first read: the newest 16 KiB).
  fallback(why) {
    this.polling = true;
    this.status.textContent = `read-only: ${why}; output polled`;
    this.status.className = "warn-text";
    this.input.disabled = true;
    const poll = async () => {
      if (this.closed) return;
      try {
        const q = this.offset === null ? "?max=16384" : `?offset=${this.offset}`;
        const r = await get(`/v1/vms/${enc(this.vm)}/console${q}`);
        if (this.offset !== null && r.start > this.offset) this.write("\n[… output lost …]\n");
        this.offset = r.offset;
        this.write(r.data || "");
      } catch (_) {
        // the page shows API errors; keep trying
      }
      this.timer = setTimeout(poll, 1500);
    };
    poll();
  }

  // Types text into the guest; false (and says so) while the socket is not open: what was
  // typed stays in the input line to send again.
  send(text) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      this.status.textContent = "not sent: the console is not connected";
      this.status.className = "warn-text";
      return false;
    }
    this.ws.send(text);
    return true;
  }

  // The VM moved to another node (its migration ended, it failed over): ferryd relays the
  // console from wherever the VM is, so an open socket goes on by itself; one that closed
  // as the VM left reconnects now rather than after its 2 s pause.
  follow() {
    if (this.closed || this.ws || this.polling || this.loggedOut) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.connect();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
    this.ws = null;
  }
}
