// The admin API client: JSON in and out, the CSRF header on every write, problem+json turned into an
// ApiError whose `fields` maps each field the API named to its message.

const CSRF = document.querySelector('meta[name="kokoa-csrf"]')?.content ?? "";
export const BASE = "/api/v1";

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem?.detail || problem?.title || `The request failed (HTTP ${status}).`;
    super(detail);
    this.status = status;
    this.problem = problem ?? {};
    this.fields = {};
    this.general = [];
    for (const error of problem?.errors ?? []) {
      if (error.field) {
        const had = this.fields[error.field];
        this.fields[error.field] = had ? `${had} ${error.message}` : error.message;
      } else {
        this.general.push(error.message);
      }
    }
  }
}

/** The CSRF token the server put in the page (for the sign-out form). */
export const csrfToken = () => CSRF;

/** A signed-out browser goes back to the sign-in page (its session ended or was revoked). */
function signedOut() {
  location.assign("/login");
}

export async function request(method, path, body) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (method !== "GET") headers["X-CSRF-Token"] = CSRF;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(BASE + path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, {
      title: "Network error",
      detail: "The gateway could not be reached. Check the connection and try again.",
    });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401) signedOut();
    throw new ApiError(response.status, data ?? { title: response.statusText, detail: text });
  }
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body = {}) => request("POST", path, body);
export const patch = (path, body) => request("PATCH", path, body);
export const del = (path) => request("DELETE", path);

/** Every item of a paginated list (following next_cursor). */
export async function all(path, limit = 500) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await get(`${path}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

/** A query string of the parameters that have a value ("" when none). */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** The API path of an organization's object: org("o1", "/sites") is /orgs/o1/sites. */
export const org = (id, rest = "") => `/orgs/${encodeURIComponent(id)}${rest}`;
