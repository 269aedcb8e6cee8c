// The pictures a user adds to a message: what the page checks before sending (type, size)
// and how it reads them. The server stays the judge: it sniffs the bytes and decodes them.
import {formatBytes} from "./dom.js";

// What the server decodes (fovea/media/images.py sniffs the bytes; the type is a first check).
export const IMAGE_TYPES = {
  "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif", "image/bmp": "bmp",
};
const EXTENSION_TYPES = {
  png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", webp: "image/webp", gif: "image/gif",
  bmp: "image/bmp",
};
export const TYPE_NAMES = "PNG, JPEG, WebP, GIF or BMP";
export const MAX_IMAGE_BYTES = 20 * 1024 * 1024; // the server's default max_image_bytes
export const DETAILS = ["auto", "low", "high"];

export function forgetImages(images) {
  for (const image of images) URL.revokeObjectURL(image.url);
}

export function carriesFiles(event) {
  return [...(event.dataTransfer?.types ?? [])].includes("Files");
}

export function imageType(file) {
  if (IMAGE_TYPES[file.type]) return file.type;
  if (file.type === "image/x-ms-bmp") return "image/bmp";
  const extension = /\.([A-Za-z0-9]+)$/.exec(file.name ?? "")?.[1]?.toLowerCase();
  return !file.type || file.type === "application/octet-stream" ? EXTENSION_TYPES[extension] ?? null : null;
}

export function imageProblem(file) {
  const name = file.name || "The pasted file";
  if (!imageType(file)) return `${name} was not added: the server accepts ${TYPE_NAMES} images only.`;
  if (file.size > MAX_IMAGE_BYTES) {
    return `${name} was not added: it is ${formatBytes(file.size)}; images may be at most `
      + `${formatBytes(MAX_IMAGE_BYTES)} each.`;
  }
  if (!file.size) return `${name} was not added: it is empty.`;
  return null;
}

export function newImage(file) {
  const mime = imageType(file);
  const blob = file.type === mime ? file : file.slice(0, file.size, mime);
  return {
    blob, mime, name: file.name || null, size: file.size, detail: "auto",
    url: URL.createObjectURL(blob), dataUrl: null,
  };
}

export function dataUrlOf(image) {
  image.dataUrl ??= new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(image.blob);
  });
  return image.dataUrl;
}
