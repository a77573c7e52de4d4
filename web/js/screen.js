// SPDX-License-Identifier: MIT
// The VM's screen: noVNC's RFB client (web/vendor/novnc-1.7.0) on the WebSocket
// /v1/vms/NAME/vnc/ws, which ferryd authenticates with the session cookie and relays to the
// VNC server of the VM's QEMU (a unix socket on the VM's node; QEMU never listens on a port).
// Opened on demand; when the VM stops or moves the socket closes and the screen reconnects
// after 2 s while it is open. Under the page's CSP (img-src 'self') noVNC cannot draw the
// guest's cursor as a data: URL; the standard VGA of ferry's VMs defines none anyway.
import RFB from "../vendor/novnc-1.7.0/core/rfb.js";
import { enc } from "./api.js";
import { h } from "./dom.js";

export class Screen {
  constructor(vm) {
    this.vm = vm;
    this.box = h("div#screen.screen", { "aria-label": `${vm}'s screen` });
    this.status = h("span#screen-status.muted", "closed");
    this.openBtn = h("button#screen-open", { type: "button", onclick: () => (this.want ? this.stop() : this.open()) }, "Open screen");
    this.cad = h("button#screen-cad.ghost", { type: "button", disabled: true, title: "send Ctrl-Alt-Del to the guest",
      onclick: () => this.rfb && this.rfb.sendCtrlAltDel() }, "Ctrl-Alt-Del");
    this.el = h("div.screen-box", h("div.console-head", h("strong", "Screen"), " ", this.status, " ", this.openBtn, " ", this.cad), this.box);
    this.rfb = null;
    this.want = false;
    this.timer = null;
  }

  // The spec has no display, or the VM does not run: say so instead of a button that cannot
  // work (an open screen keeps reconnecting: the VM may be restarting or moving).
  available(display, running) {
    this.openBtn.disabled = !this.want && !(display && running);
    if (this.want || this.rfb) return;
    this.status.textContent = !display ? "no display (the VM's spec says \"display\": \"none\")"
      : running ? "closed" : "closed (the VM does not run)";
    this.status.className = "muted";
  }

  open() {
    this.want = true;
    this.openBtn.textContent = "Close screen";
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    this.status.textContent = "connecting…";
    this.status.className = "muted";
    let rfb;
    try {
      rfb = new RFB(this.box, `${proto}//${location.host}/v1/vms/${enc(this.vm)}/vnc/ws`, { shared: true });
    } catch (e) {
      this.status.textContent = `cannot connect: ${e.message}`;
      this.status.className = "warn-text";
      return;
    }
    rfb.scaleViewport = true;
    rfb.background = "#111";
    this.rfb = rfb;
    rfb.addEventListener("connect", () => {
      if (this.rfb !== rfb) return;
      this.cad.disabled = false;
      this.showSize();
    });
    rfb.addEventListener("disconnect", (ev) => {
      if (this.rfb !== rfb) return;
      this.rfb = null;
      this.cad.disabled = true;
      if (!this.want) return;
      this.status.textContent = `disconnected${ev.detail && ev.detail.clean ? "" : " (the VM stopped or moved, or the connection broke)"}; reconnecting…`;
      this.status.className = "warn-text";
      this.timer = setTimeout(() => this.want && this.connect(), 2000);
    });
  }

  // "connected 720×400": the guest's framebuffer, which changes with its video mode.
  showSize() {
    const c = this.box.querySelector("canvas");
    if (!this.rfb || !c) return;
    this.status.textContent = `connected ${c.width}×${c.height}`;
    this.status.className = "good-text";
  }

  stop() {
    this.want = false;
    clearTimeout(this.timer);
    this.openBtn.textContent = "Open screen";
    const rfb = this.rfb;
    this.rfb = null;
    if (rfb) rfb.disconnect();
    this.cad.disabled = true;
    this.status.textContent = "closed";
    this.status.className = "muted";
  }

  close() {
    this.stop();
  }
}
