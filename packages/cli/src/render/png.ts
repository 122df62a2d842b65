// SVG to PNG through sharp (librsvg), the one raster dependency the CLI has. librsvg maps SVG
// units at 72 dpi, so 144 dpi renders the PNG at twice the SVG's size: crisp text and lines.
import sharp from 'sharp';

export async function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg), { density: 144 }).png().toBuffer();
}
