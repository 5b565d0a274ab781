// Destructive actions (drain, cancel) take two clicks: the first arms the button for a few
// seconds, the second within that time does it. Armed keys survive re-renders of the panels.

export class Confirmations {
  constructor(windowMs, onChange) {
    this.windowMs = windowMs;
    this.onChange = onChange; // re-render the labels (armed, and again when it lapses)
    this.armed = new Map(); // key -> time (ms) until which it stays armed
  }

  isArmed(key) {
    const until = this.armed.get(key);
    return until !== undefined && until > Date.now();
  }

  confirm(key, action) {
    if (this.isArmed(key)) {
      this.armed.delete(key);
      action();
    } else {
      this.armed.set(key, Date.now() + this.windowMs);
      setTimeout(() => {
        this.armed.delete(key);
        this.onChange();
      }, this.windowMs + 50);
    }
    this.onChange();
  }
}
