// How times, durations and sizes are written on every page.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

export function when(value) {
  if (!value) return "—";
  const date = value instanceof Date ? value : new Date(typeof value === "number" ? value * 1000 : value);
  return Number.isNaN(date.getTime()) ? String(value) : dateTime.format(date);
}

export function time(value) {
  const date = value instanceof Date ? value : new Date(typeof value === "number" ? value * 1000 : value);
  return Number.isNaN(date.getTime()) ? String(value) : clock.format(date);
}

export function ago(value, now = Date.now()) {
  if (!value) return "never";
  const seconds = Math.round((new Date(value).getTime() - now) / 1000);
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [365, "day"]];
  let amount = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(amount) < size) return relative.format(amount, unit);
    amount = Math.round(amount / size);
  }
  return relative.format(amount, "year");
}

export function bytes(n) {
  if (n == null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function ms(value) {
  if (value == null) return "—";
  return value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

export const count = (n) => new Intl.NumberFormat().format(n ?? 0);

/** An <input type="datetime-local"> value as the API's RFC 3339 time (UTC), or "" when empty. */
export function isoFromLocal(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Where an HTTP resource answers, or a TCP/UDP resource's public port. */
export function address(resource) {
  if (resource.kind === "http") return `${resource.hostname}${resource.path_prefix && resource.path_prefix !== "/" ? resource.path_prefix : ""}`;
  return `port ${resource.public_port ?? resource.listen ?? "?"}`;
}
