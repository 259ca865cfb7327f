/**
 * Checkpoint files of a run directory: each written atomically, so that a crash or a full disk
 * never leaves a half-written file under a checkpoint's name; listed and pruned by the step in
 * their names; and the newest one that decodes cleanly found for a resume. The bytes inside are
 * `checkpoint_format.ts`'s.
 *
 * A checkpoint written at step `s` is named `ckpt-<s padded to 8 digits>.ddpm`
 * ({@linkcode checkpointPath}), so names sort by step; a save in progress is
 * `<name>.tmp-<pid>-<random>`. `Deno` is used only inside function bodies, so importing this
 * module elsewhere is safe.
 *
 * @module
 */

import { checkInteger } from "./_checks.ts";
import { type Checkpoint, decodeCheckpoint, encodeCheckpoint } from "./checkpoint_format.ts";

// The types of what these functions read and write; most callers need nothing else.
export type { Checkpoint, NamedTensors } from "./checkpoint_format.ts";

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const CHECKPOINT_NAME = /^ckpt-(\d{8,})\.ddpm$/;

/**
 * Writes a checkpoint so that `path` holds either the previous file or the complete new one,
 * never a mix: the bytes go to a temporary file in the same directory, which is synced to
 * disk and then renamed over `path` (a rename within one filesystem is atomic), and the
 * directory is synced so the rename survives a power cut. The parent directory is created if
 * missing. On failure the temporary file is removed and the error rethrown.
 *
 * @example
 * ```ts ignore
 * import { checkpointPath, saveCheckpoint } from "./checkpoint.ts";
 * await saveCheckpoint(checkpointPath("runs/cifar10", ckpt.step), ckpt);
 * ```
 */
export async function saveCheckpoint(path: string, ckpt: Checkpoint): Promise<void> {
  // 1. Encode first, so that a checkpoint failing validation never touches the disk.
  const bytes = await encodeCheckpoint(ckpt);
  const dir = _dirname(path);
  await Deno.mkdir(dir, { recursive: true });

  // 2. Temporary file, synced, renamed over the target.
  const random = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
  const tmp = `${path}.tmp-${Deno.pid}-${random}`;
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true });
    try {
      for (let written = 0; written < bytes.length;) {
        written += await file.write(bytes.subarray(written));
      }
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (error) {
    await _removeIfPresent(tmp);
    throw error;
  }

  // 3. Make the rename durable.
  await _syncDirectory(dir);
}

/**
 * Reads and verifies a checkpoint file; every error names `path`.
 *
 * @example
 * ```ts ignore
 * import { latestCheckpoint, loadCheckpoint } from "./checkpoint.ts";
 * const latest = await latestCheckpoint("runs/cifar10");
 * const ckpt = latest === null ? null : await loadCheckpoint(latest);
 * ```
 */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  // Deno's I/O errors already name the path ("readfile 'runs/x.ddpm'").
  const bytes = await Deno.readFile(path);
  return await decodeCheckpoint(bytes, path);
}

/**
 * The path of the checkpoint for `step` in a run directory: `<dir>/ckpt-<step, 8 digits>.ddpm`,
 * so that names sort by step.
 *
 * @example
 * ```ts
 * import { checkpointPath } from "./checkpoint.ts";
 * console.assert(checkpointPath("runs/a", 1500) === "runs/a/ckpt-00001500.ddpm");
 * ```
 */
export function checkpointPath(dir: string, step: number): string {
  checkInteger(step, "step", 0, MAX_SAFE);
  return _join(dir, _checkpointName(step));
}

/**
 * The checkpoints of a run directory, oldest first, found by name alone
 * (`ckpt-<step>.ddpm`); temporary files of a save in progress and other files are ignored. A
 * directory that does not exist yet has none.
 */
export async function listCheckpoints(dir: string): Promise<{ step: number; path: string }[]> {
  const found: { step: number; path: string }[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory) continue;
      const match = CHECKPOINT_NAME.exec(entry.name);
      if (match === null) continue;
      const step = Number(match[1]);
      // Only the canonical spelling, so that one step never has two files.
      if (Number.isSafeInteger(step) && _checkpointName(step) === entry.name) {
        found.push({ step, path: _join(dir, entry.name) });
      }
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  return found.sort((a, b) => a.step - b.step);
}

/**
 * The newest checkpoint in a run directory that loads cleanly, or `null` if there is none (or
 * the directory does not exist yet). Newer files that fail to decode (a crash mid-copy, a bad
 * disk) are skipped with a `console.warn` naming them, so the trainer resumes from the newest
 * good one. Each candidate is read and verified in full; I/O errors other than a file
 * vanishing are rethrown rather than skipped, since resuming from an older checkpoint because
 * of a permission problem would silently lose training.
 *
 * @example
 * ```ts ignore
 * import { latestCheckpoint } from "./checkpoint.ts";
 * const resumeFrom = await latestCheckpoint("runs/cifar10"); // "runs/cifar10/ckpt-00120000.ddpm"
 * ```
 */
export async function latestCheckpoint(dir: string): Promise<string | null> {
  const candidates = await listCheckpoints(dir);
  for (let i = candidates.length - 1; i >= 0; i--) {
    const { path } = candidates[i];
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue; // pruned since the listing
      throw error;
    }
    try {
      await decodeCheckpoint(bytes, path);
      return path;
    } catch (error) {
      console.warn(`latestCheckpoint: skipping ${path}: ${(error as Error).message}`);
    }
  }
  return null;
}

/**
 * Deletes all but the newest `keep` checkpoints of a run directory (by step in the name) and
 * returns the deleted paths. Temporary files are left alone: one may be a save in progress.
 * `keep` is at least 1 so that pruning can never delete the checkpoint a resume needs.
 *
 * @example
 * ```ts ignore
 * import { pruneCheckpoints } from "./checkpoint.ts";
 * await pruneCheckpoints("runs/cifar10", 3);
 * ```
 */
export async function pruneCheckpoints(dir: string, keep: number): Promise<string[]> {
  checkInteger(keep, "keep", 1, MAX_SAFE);
  const all = await listCheckpoints(dir);
  const doomed = all.slice(0, Math.max(0, all.length - keep)).map((c) => c.path);
  for (const path of doomed) await _removeIfPresent(path);
  return doomed;
}

async function _removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

async function _syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await Deno.open(dir, { read: true });
    try {
      await handle.sync();
    } finally {
      handle.close();
    }
  } catch {
    // Windows cannot open a directory and some filesystems refuse to sync one. The file's
    // bytes are already synced and the rename done; only the rename's durability across a
    // power cut is lost there, and nothing better is possible.
  }
}

function _checkpointName(step: number): string {
  return `ckpt-${String(step).padStart(8, "0")}.ddpm`;
}

function _dirname(path: string): string {
  const cut = Deno.build.os === "windows"
    ? Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"))
    : path.lastIndexOf("/");
  if (cut < 0) return ".";
  return cut === 0 ? "/" : path.slice(0, cut);
}

function _join(dir: string, name: string): string {
  return dir.endsWith("/") || dir.endsWith("\\") ? `${dir}${name}` : `${dir}/${name}`;
}
