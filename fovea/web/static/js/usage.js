export async function render(root) {
  root.append("Not built yet");
}
