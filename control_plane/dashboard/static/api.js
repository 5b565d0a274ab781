// The admin API: the operator's token from this tab's sessionStorage, sent as a Bearer header
// (never in a URL, never logged); OpenAI-shaped errors become ApiError with the server's message.

const TOKEN_KEY = "flotilla.adminToken";
const REQUEST_TIMEOUT_MS = 10000;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const token = () => sessionStorage.getItem(TOKEN_KEY);

export async function api(method, path, body) {
  const headers = { authorization: "Bearer " + token(), accept: "application/json" };
  const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  init.signal = controller.signal;
  let response;
  let data = null;
  try {
    response = await fetch(path, init);
    data = await response.json().catch(() => null);
  } catch (err) {
    throw new ApiError(0, err && err.name === "AbortError"
      ? "the control plane did not answer in time" : "the control plane is unreachable");
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok) {
    const message = data && data.error && typeof data.error.message === "string"
      ? data.error.message : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

export const list = (data) => (data && Array.isArray(data.data) ? data.data : []);

export async function settle(promise) {
  try {
    return { value: await promise };
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
      return { missing: true };
    }
    return { error: err instanceof ApiError ? err : new ApiError(0, String(err)) };
  }
}

export function saveToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}
