// One place that binds htm to Preact, so every module writes html`...` and imports hooks from here.
import { h, render, Fragment, createContext } from "../vendor/preact.module.js";
import htm from "../vendor/htm.module.js";

export const html = htm.bind(h);
export { h, render, Fragment, createContext };
export {
  useCallback, useContext, useEffect, useId, useMemo, useRef, useState,
} from "../vendor/hooks.module.js";
